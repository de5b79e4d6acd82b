#pragma once

#include <memory>

#include "fanout/fanout.h"
#include "store/store.h"

namespace chatd::webhooks {

/// The store as sessions and the REST API see it when webhooks are on: each
/// message is appended with the events it must produce (Message::hooks), so
/// that they are committed with it. message.offline is decided here, before
/// the commit: the recipient has no connection to the chat on any instance
/// (Fanout::devices). Appends of one chat reach the store in the order they
/// were made, whatever order the presence answers come back in.
class HookingStore final : public store::Store {
 public:
  /// `events`: the Message::hooks bits to set (WebhookOptions::message_events).
  HookingStore(store::Store& inner, fanout::Fanout& fanout, std::uint8_t events);
  /// Appends still waiting for a presence answer are dropped unanswered.
  ~HookingStore() override;

  void append(chat::PendingMessage message, AppendHandler handler) override;
  void history(chat::ChatKey chat, store::HistoryQuery query, HistoryHandler handler) override {
    inner_.history(std::move(chat), query, std::move(handler));
  }
  void mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                 ReadMarksHandler handler) override {
    inner_.mark_read(std::move(chat), std::move(user), seq, std::move(handler));
  }
  void read_marks(chat::ChatKey chat, ReadMarksHandler handler) override {
    inner_.read_marks(std::move(chat), std::move(handler));
  }
  void conversations(std::string user, std::size_t limit, ConversationsHandler handler) override {
    inner_.conversations(std::move(user), limit, std::move(handler));
  }
  bool ready() const override { return inner_.ready(); }
  store::QueueStats queue_stats() const override { return inner_.queue_stats(); }
  void blocks(std::string user, BlocksHandler handler) override {
    inner_.blocks(std::move(user), std::move(handler));
  }
  std::unique_ptr<store::Outbox> make_outbox() override { return inner_.make_outbox(); }
  std::unique_ptr<store::Maintenance> make_maintenance() override {
    return inner_.make_maintenance();
  }
  void drain() override { inner_.drain(); }

 private:
  struct Waiting;

  store::Store& inner_;
  fanout::Fanout& fanout_;
  const std::uint8_t events_;
  /// Shared with the presence answers in flight, which may outlive this.
  std::shared_ptr<Waiting> waiting_;
};

}  // namespace chatd::webhooks
