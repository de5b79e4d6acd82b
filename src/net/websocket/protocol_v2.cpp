#include "net/websocket/protocol_v2.h"

#include "chat/frames_v2.h"
#include "net/store_replies.h"
#include "net/websocket/replay.h"
#include "net/websocket/session.h"

namespace chatd::net::websocket {

ProtocolV2::ProtocolV2(Session& session)
    : session_(session),
      // Typing events: a client sends one when typing starts and stops; more
      // than a few a second is noise and is dropped.
      typing_rate_(2, 5) {}

boost::asio::awaitable<bool> ProtocolV2::open() {
  return replay_v2(session_);
}

void ProtocolV2::handle(std::string_view payload) {
  const Services& services = session_.services();
  const chat::FrameLimits limits{services.options.max_text_bytes};
  auto parsed = chat::v2::parse_client_frame(payload, limits);
  if (auto* refusal = std::get_if<chat::v2::Refusal>(&parsed)) {
    if (session_.take_rate_token()) {
      session_.reject(refusal->error.code, refusal->error.message, refusal->client_id);
    }
    return;
  }
  auto& frame = std::get<chat::v2::ClientFrame>(parsed);
  if (auto* typing = std::get_if<chat::v2::Typing>(&frame)) {
    // Typing has its own allowance, and what is past it is dropped: it is a
    // hint, and a client that sends one per keystroke should not be punished.
    if (typing_rate_.try_take()) {
      session_.publish_event(chat::v2::typing_frame(session_.user(), typing->typing));
    }
    return;
  }
  auto* send = std::get_if<chat::v2::Send>(&frame);
  if (!session_.take_rate_token(send != nullptr ? std::string_view(send->client_id)
                                                : std::string_view())) {
    return;
  }
  if (send != nullptr) {
    session_.commit(session_.user(), std::move(send->text), std::move(send->client_id));
  } else if (auto* history = std::get_if<chat::v2::HistoryRequest>(&frame)) {
    // One page in the works at a time: the read loop waits for it, so a
    // client cannot pile up store reads or pages.
    session_.run_exclusive(
        answer_history(session_, history->before,
                       history->limit != 0 ? history->limit : services.options.history_limit));
  } else if (auto* read = std::get_if<chat::v2::Read>(&frame)) {
    mark_read(read->seq);
  } else if (auto* change = std::get_if<chat::v2::Change>(&frame)) {
    session_.commit_change(change->kind, std::move(change->client_id), change->seq,
                           std::move(change->id), std::move(change->text));
  } else if (auto* block = std::get_if<chat::v2::Block>(&frame)) {
    session_.commit_change(block->block ? chat::EntryKind::block : chat::EntryKind::unblock, {}, 0,
                           {}, {});
  } else {
    session_.reply(chat::v2::pong_frame());
  }
}

void ProtocolV2::committed(const store::AppendResult& result, std::string_view client_id) {
  if (result.error != store::StoreError::none) {
    session_.reject_store_error(result.error, "message not stored", client_id);
    return;
  }
  if (result.refusal != store::Refusal::none) {
    session_.reject(store::to_string(result.refusal), refusal_message(result.refusal), client_id);
    return;
  }
  const chat::Message& entry = *result.message;
  if (entry.kind == chat::EntryKind::block || entry.kind == chat::EntryKind::unblock) {
    // The answer is the change itself (seq 0 when nothing changed).
    if (entry.seq != 0) session_.queue().acked(entry.seq);
    session_.reply(chat::message_frame(entry));
    return;
  }
  session_.queue().acked(result.message->seq);
  session_.reply(chat::v2::ack_frame(*result.message, result.duplicate));
}

void ProtocolV2::mark_read(std::uint64_t seq) {
  // A client cannot have read what it was never sent (or acked).
  seq = std::min(seq, session_.queue().last_seq_seen());
  if (seq == 0) return;
  session_.services().store.mark_read(
      session_.chat(), session_.user(), seq, session_.store_call([this](store::ReadMarks marks) {
        if (marks.error != store::StoreError::none) {
          session_.reject_store_error(marks.error, "receipt not stored");
          return;
        }
        // The stored mark, which never goes back: the peer and my other devices.
        session_.publish_event(
            chat::v2::read_frame(session_.user(), marks.of(session_.chat(), session_.user())));
      }));
}

}  // namespace chatd::net::websocket
