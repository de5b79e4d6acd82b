// The protocol v2 half of WebSocketSession (subprotocol chat.v2, docs/protocol.md): what a
// v2 client gets on connect, and the frames it may send. The session's life, its queue
// and v1 live in websocket_session.cpp.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "chat/frames_v2.h"
#include "fanout/fanout.h"
#include "net/websocket_session.h"
#include "store/store.h"

namespace chatd::net {
namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using asio::use_awaitable;

namespace {

/// Messages read from the store per round of a resume. The writer sends each
/// round while the next is read; the queue never holds more than about two.
constexpr std::size_t kResumePage = 256;

}  // namespace

// ---------------------------------------------------------------------------
// On connect
// ---------------------------------------------------------------------------

asio::awaitable<bool> WebSocketSession::replay_v2() {
  // Both paths read the newest messages first: a fresh client shows them, a
  // resuming one learns the chat's last seq for the hello.
  store::HistoryQuery newest;
  newest.limit = path_.after_seq ? 1 : services_.options.history_limit;
  store::HistoryPage page =
      co_await store::async_history(services_.store, *chat_, newest, use_awaitable);
  if (page.error != store::StoreError::none) {
    close(websocket::close_code::try_again_later, "message store unavailable");
    co_return false;
  }
  const store::ReadMarks marks =
      co_await store::async_read_marks(services_.store, *chat_, use_awaitable);
  if (marks.error != store::StoreError::none) {
    close(websocket::close_code::try_again_later, "message store unavailable");
    co_return false;
  }
  chat::v2::Hello hello;
  hello.my_read_seq = marks.of(*chat_, user_);
  hello.peer_read_seq = marks.of(*chat_, peer());
  hello.chat = chat_->str();
  hello.me = user_;
  hello.peer = peer();
  // On every instance, with Redis; the peer's connections here without it.
  hello.peer_devices =
      co_await fanout::async_devices(services_.fanout, *chat_, peer(), use_awaitable);
  hello.last_seq = page.messages.empty() ? 0 : page.messages.back()->seq;
  hello.resuming = path_.after_seq.has_value();
  hello.resume_after = path_.after_seq.value_or(0);
  send(chat::v2::hello_frame(hello));
  {
    std::lock_guard lock(mutex_);
    events_open_ = true;
  }
  if (!path_.after_seq) {
    send(chat::v2::history_frame(page.messages, page.has_more));
    finish_replay(hello.last_seq);
    co_return !is_closing();
  }

  // Resume: every message after the client's last seq, in order, however many,
  // before any live one. Live messages committed meanwhile wait in the replay
  // buffer; finish_replay sends those past the last one read here.
  // A client that holds more than the chat has (its store was replaced or
  // restored from an older backup) resumes from the chat's end: what is
  // committed from now on reaches it. The hello told it (last_seq < resume_after).
  std::uint64_t cursor = std::min(*path_.after_seq, hello.last_seq);
  for (;;) {
    store::HistoryQuery query;
    query.after_seq = cursor;
    query.oldest_first = true;
    query.limit = kResumePage;
    page = co_await store::async_history(services_.store, *chat_, query, use_awaitable);
    if (page.error != store::StoreError::none) {
      close(websocket::close_code::try_again_later, "message store unavailable");
      co_return false;
    }
    for (const auto& message : page.messages) {
      send(chat::message_frame(*message));
      cursor = message->seq;
    }
    if (!page.has_more || is_closing()) break;
    co_await wait_for_queue_below(services_.options.send_queue_max_bytes / 2);
  }
  finish_replay(cursor);
  co_return !is_closing();
}

// ---------------------------------------------------------------------------
// Client frames
// ---------------------------------------------------------------------------

void WebSocketSession::handle_frame_v2(std::string_view payload) {
  const chat::FrameLimits limits{services_.options.max_text_bytes};
  auto parsed = chat::v2::parse_client_frame(payload, limits);
  if (auto* refusal = std::get_if<chat::v2::Refusal>(&parsed)) {
    if (take_rate_token()) {
      reject(refusal->error.code, refusal->error.message, refusal->client_id);
    }
    return;
  }
  auto& frame = std::get<chat::v2::ClientFrame>(parsed);
  if (auto* typing = std::get_if<chat::v2::Typing>(&frame)) {
    // Typing has its own allowance, and what is past it is dropped: it is a
    // hint, and a client that sends one per keystroke should not be punished.
    if (typing_rate_.try_take()) publish_event(chat::v2::typing_frame(user_, typing->typing));
    return;
  }
  auto* send_frame = std::get_if<chat::v2::Send>(&frame);
  if (!take_rate_token(send_frame != nullptr ? std::string_view(send_frame->client_id)
                                             : std::string_view())) {
    return;
  }
  if (send_frame != nullptr) {
    append(user_, std::move(send_frame->text), std::move(send_frame->client_id));
  } else if (auto* history = std::get_if<chat::v2::HistoryRequest>(&frame)) {
    send_history_page(history->before,
                      history->limit != 0 ? history->limit : services_.options.history_limit);
  } else if (auto* read = std::get_if<chat::v2::Read>(&frame)) {
    mark_read(read->seq);
  } else {
    send(chat::v2::pong_frame());
  }
}

void WebSocketSession::mark_read(std::uint64_t seq) {
  // A client cannot have read what it was never sent (or acked).
  {
    std::lock_guard lock(mutex_);
    seq = std::min(seq, std::max(last_seq_sent_, last_seq_acked_));
  }
  if (seq == 0) return;
  ++pending_sends_;
  services_.store.mark_read(
      *chat_, user_, seq,
      asio::bind_executor(ws_.get_executor(), [self = shared_from_this()](store::ReadMarks marks) {
        self->send_done();
        if (marks.error != store::StoreError::none) {
          self->reject("store_unavailable", "message store unavailable; receipt not stored");
          return;
        }
        // The stored mark, which never goes back: the peer and my other devices.
        self->publish_event(chat::v2::read_frame(self->user_, marks.of(*self->chat_, self->user_)));
      }));
}

void WebSocketSession::send_history_page(std::uint64_t before, std::size_t limit) {
  // Counted as a pending send: the read loop waits for it like for a commit,
  // so a client cannot pile up store reads.
  ++pending_sends_;
  store::HistoryQuery query;
  query.before_seq = before;
  query.limit = std::min(limit, chat::v2::kMaxHistoryPage);
  services_.store.history(
      *chat_, query,
      asio::bind_executor(ws_.get_executor(),
                          [self = shared_from_this()](store::HistoryPage page) {
                            self->send_done();
                            if (page.error != store::StoreError::none) {
                              self->reject("store_unavailable",
                                           "message store unavailable; try again");
                              return;
                            }
                            self->send(chat::v2::history_frame(page.messages, page.has_more));
                          }));
}

}  // namespace chatd::net
