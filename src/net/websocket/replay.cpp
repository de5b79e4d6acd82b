#include "net/websocket/replay.h"

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>

#include "chat/frames.h"
#include "chat/frames_v2.h"
#include "fanout/fanout.h"
#include "net/websocket/close_codes.h"
#include "net/websocket/session.h"
#include "store/store.h"

namespace chatd::net::websocket {
namespace asio = boost::asio;
using asio::use_awaitable;

namespace {

/// Most messages read from the store in one slice of a replay. The slice is
/// also cut to the send queue's room, so this only bounds a store read.
constexpr std::size_t kSliceMessages = 256;

/// The room a slice waits for before it is read: half the bound, so that
/// the writer always has the other half to send meanwhile.
std::size_t slice_room(const Session& session) {
  return session.services().options.send_queue_max_bytes / 2;
}

/// Reads a page of the session's chat; a store failure closes with 1013.
asio::awaitable<std::optional<store::HistoryPage>> read_page(Session& session,
                                                             store::HistoryQuery query) {
  store::HistoryPage page =
      co_await store::async_history(session.services().store, session.chat(), query, use_awaitable);
  if (page.error != store::StoreError::none) {
    session.close(kTryAgainLater, "message store unavailable");
    co_return std::nullopt;
  }
  co_return page;
}

/// Every message after `after`, one frame each, slice by slice, then the
/// end of the replay: live messages follow from there without a gap.
asio::awaitable<bool> send_after(Session& session, std::uint64_t after) {
  // Live messages buffered since the join may be at or before `after` too.
  session.queue().replay_from(after);
  std::uint64_t cursor = after;
  // Messages' size as the last slice found it: the next asks the store for
  // about as many as fit, not for rows it would read and leave (a MongoDB
  // cursor fetches its whole first batch).
  std::size_t average_bytes = 0;
  for (;;) {
    const bool room = co_await session.wait_for_room(slice_room(session));
    if (!room) co_return false;
    store::HistoryQuery query;
    query.after_seq = cursor;
    query.oldest_first = true;
    // v2 resumes get every entry, changes too; v1 sees messages, no tombstones.
    query.messages_only = session.is_v1();
    query.skip_deleted = session.is_v1();
    query.max_bytes = session.queue().room();
    query.limit = average_bytes == 0 ? kSliceMessages
                                     : std::clamp<std::size_t>(query.max_bytes / average_bytes + 1,
                                                               1, kSliceMessages);
    const auto page = co_await read_page(session, query);
    if (!page) co_return false;
    if (!page->messages.empty()) {
      std::size_t bytes = 0;
      for (const auto& message : page->messages) bytes += store::page_bytes(*message);
      average_bytes = std::max<std::size_t>(bytes / page->messages.size(), 1);
    }
    for (const auto& message : page->messages) {
      cursor = message->seq;
      if (!session.shows(*message)) continue;
      const bool sent = co_await session.send_paced(chat::message_frame(*message), message->seq);
      if (!sent) co_return false;
    }
    if (page->has_more) continue;
    // Read to the end. The live messages buffered meanwhile follow, unless
    // they had to give way to this replay: then read on from the store.
    if (session.finish_replay()) co_return !session.queue().closing();
    cursor = std::max(cursor, session.queue().last_seq_sent());
  }
}

}  // namespace

asio::awaitable<bool> replay_v1(Session& session) {
  // The last HISTORY_LIMIT messages a v1 client may see (no changes, no
  // tombstones), oldest first. The newest page is read within the send
  // queue's room; when it holds them all it is sent as it is.
  const std::size_t limit = session.services().options.history_limit;
  if (limit == 0) {  // no history: live messages from the chat's end
    store::HistoryQuery last;
    last.limit = 1;
    last.messages_only = false;
    const auto end = co_await read_page(session, last);
    if (!end) co_return false;
    co_return co_await send_after(session, end->messages.empty() ? 0 : end->messages.back()->seq);
  }
  store::HistoryQuery newest;
  newest.limit = limit;
  newest.skip_deleted = true;
  newest.max_bytes = session.queue().room();
  auto page = co_await read_page(session, newest);
  if (!page) co_return false;
  // None to show: whatever comes from now on is (a message committed after
  // the page was read is past it, so the replay starts from the beginning).
  if (page->messages.empty()) co_return co_await send_after(session, 0);
  std::size_t found = page->messages.size();
  std::uint64_t start = page->messages.front()->seq - 1;
  if (!page->has_more || found >= limit) {
    session.queue().replay_from(start);
    for (const auto& message : page->messages) {
      const bool sent = co_await session.send_paced(chat::message_frame(*message), message->seq);
      if (!sent) co_return false;
    }
    page.reset();
    if (session.finish_replay()) co_return !session.queue().closing();
    co_return co_await send_after(session, session.queue().last_seq_sent());
  }
  // Cut short by the room (long texts): the replay reads the last
  // HISTORY_LIMIT seqs up to the newest message in slices, as it reads a
  // resume; changes and tombstones among them make it show fewer. Counting
  // back exactly would read every text twice before the first is sent.
  const std::uint64_t newest_seq = page->messages.back()->seq;
  page.reset();
  start = newest_seq > limit ? newest_seq - limit : 0;
  co_return co_await send_after(session, start);
}

asio::awaitable<bool> replay_v2(Session& session) {
  const Services& services = session.services();
  const std::optional<std::uint64_t> after = session.path().after_seq;
  // Both paths read the newest messages first: a fresh client shows them, a
  // resuming one learns the chat's last seq for the hello.
  // The marks first: the chat's last seq they give is then at most what the
  // page read after them shows (a change between the two reaches the
  // client live, and applying it twice changes nothing).
  const store::ReadMarks marks =
      co_await store::async_read_marks(services.store, session.chat(), use_awaitable);
  if (marks.error != store::StoreError::none) {
    session.close(kTryAgainLater, "message store unavailable");
    co_return false;
  }
  // Set before any later block or unblock reaches deliver(), which then wins.
  const bool blocked = marks.blocks(session.chat(), session.peer());
  session.set_peer_blocks_me(blocked);
  store::HistoryQuery newest;
  newest.limit = after ? 1 : services.options.history_limit;
  newest.max_bytes = session.queue().room();
  newest.messages_only = !after;
  auto page = co_await read_page(session, newest);
  if (!page) co_return false;
  chat::v2::Hello hello;
  hello.my_read_seq = marks.of(session.chat(), session.user());
  hello.peer_read_seq = marks.of(session.chat(), session.peer());
  hello.chat = session.chat().str();
  hello.me = session.user();
  hello.peer = session.peer();
  // On every instance, with Redis; the peer's connections here without it.
  hello.peer_devices = co_await fanout::async_devices(services.fanout, session.chat(),
                                                      session.peer(), use_awaitable);
  if (blocked) hello.peer_devices = 0;  // the peer's presence is not shown
  hello.blocked = blocked;
  hello.blocking = marks.blocks(session.chat(), session.user());
  hello.first_seq = marks.first_seq;
  // The newest page holds messages only; the chat may end with changes.
  hello.last_seq =
      std::max(page->messages.empty() ? 0 : page->messages.back()->seq, after ? 0 : marks.last_seq);
  hello.resuming = after.has_value();
  hello.resume_after = after.value_or(0);
  const bool greeted = co_await session.send_paced(chat::v2::hello_frame(hello), 0);
  if (!greeted) co_return false;
  session.queue().open_events();

  if (!after) {
    const bool sent = co_await session.send_paced(
        chat::v2::history_frame_within(page->messages, page->has_more, session.queue().room()),
        hello.last_seq);
    if (!sent) co_return false;
    if (session.finish_replay()) co_return !session.queue().closing();
    co_return co_await send_after(session, session.queue().last_seq_sent());
  }
  // Resume: every message after the client's last seq, in order, however many,
  // before any live one. A client that holds more than the chat has (its store
  // was replaced or restored from an older backup) resumes from the chat's end:
  // what is committed from now on reaches it. The hello told it (last_seq <
  // resume_after).
  page.reset();
  co_return co_await send_after(session, std::min(*after, hello.last_seq));
}

asio::awaitable<void> answer_history(Session& session, std::uint64_t before, std::size_t limit) {
  const bool room = co_await session.wait_for_room(slice_room(session));
  if (!room) co_return;
  store::HistoryQuery query;
  query.before_seq = before;
  query.limit = std::min(limit, chat::v2::kMaxHistoryPage);
  query.max_bytes = session.queue().room();
  store::HistoryPage page =
      co_await store::async_history(session.services().store, session.chat(), query, use_awaitable);
  if (page.error != store::StoreError::none) {
    session.reject_store_error(page.error, "try again");
    co_return;
  }
  co_await session.send_paced(
      chat::v2::history_frame_within(page.messages, page.has_more, session.queue().room()), 0);
}

}  // namespace chatd::net::websocket
