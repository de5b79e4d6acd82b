#pragma once

// What a client is sent from the store, paced by its send queue: the history
// on connect (v1, v2), a v2 resume, and the answer to a v2 history request.
//
// None of them reads the whole of what it sends at once. Each reads a slice
// of the chat only when the send queue has room for it (half the bound, and
// the slice is cut to the room there is: HistoryQuery::max_bytes), queues it,
// and reads the next one as the client takes it in. A client that stops
// reading holds at most its send queue and one slice, and is closed as too
// slow (1008) once its queue stays full for SEND_STALL_TIMEOUT_MS; it resumes
// later with ?after=.

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>

namespace chatd::net::websocket {

class Session;

/// v1 on connect: the chat's last HISTORY_LIMIT messages, one frame each,
/// oldest first; then live messages follow without a gap. False when the
/// session closed meanwhile.
boost::asio::awaitable<bool> replay_v1(Session& session);

/// v2 on connect: the hello, then the newest history page (at most
/// HISTORY_LIMIT messages, and no more than the send queue has room for), or
/// with `?after=` every later message, one frame each, whatever their number.
boost::asio::awaitable<bool> replay_v2(Session& session);

/// A v2 history request: the newest `limit` messages before `before`, in one
/// history frame within the send queue's room (`has_more` when cut short).
boost::asio::awaitable<void> answer_history(Session& session, std::uint64_t before,
                                            std::size_t limit);

}  // namespace chatd::net::websocket
