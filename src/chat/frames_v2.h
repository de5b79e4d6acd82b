#pragma once

// Protocol v2 (subprotocol `chat.v2`, docs/protocol.md): typed JSON frames.
//
// Client frames are parsed into a variant; server frames are built here so that every
// frame of one kind has one shape. A committed message is sent to v2 clients in the same
// frame as to v1 clients (chat::message_frame, which already carries "type": "message"),
// so one serialization serves every receiver of a chat.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "chat/frames.h"
#include "chat/message.h"

namespace chatd::chat::v2 {

/// The WebSocket subprotocol a client asks for to speak v2.
inline constexpr std::string_view kSubprotocol = "chat.v2";
/// Longest client id: room for a UUID or a ULID with a device prefix.
inline constexpr std::size_t kMaxClientIdBytes = 128;
/// Largest history page a client may ask for (a bigger `limit` is capped).
inline constexpr std::size_t kMaxHistoryPage = 500;

/// `{"type":"send","client_id":"c1","text":"hi"}`. The sender is the connection's user.
struct Send {
  std::string client_id;
  std::string text;
};
/// `{"type":"history","before":42,"limit":50}`: messages with seq < before (0 or absent:
/// the newest), oldest first.
struct HistoryRequest {
  std::uint64_t before = 0;
  std::size_t limit = 0;  ///< 0: the server's HISTORY_LIMIT; capped at kMaxHistoryPage.
};
/// `{"type":"typing","typing":true}`.
struct Typing {
  bool typing = true;
};
/// `{"type":"read","seq":42}`: the user has read the chat up to and including seq.
struct Read {
  std::uint64_t seq = 0;
};
/// `{"type":"ping"}`: answered with `{"type":"pong"}` (an application-level liveness check).
struct Ping {};
/// `{"type":"edit","client_id":…,"seq":40,"text":…}` or `{"type":"delete",…}`: a change
/// to one of "me"'s messages, named by `seq` or, when seq is 0, by `id`.
struct Change {
  EntryKind kind = EntryKind::edit;  ///< edit or remove
  std::string client_id;
  std::uint64_t seq = 0;
  std::string id;
  std::string text;  ///< An edit's new text.
};
/// `{"type":"block"}` / `{"type":"unblock"}`: "me" blocks (unblocks) the peer.
struct Block {
  bool block = true;
};

using ClientFrame = std::variant<Send, HistoryRequest, Typing, Read, Ping, Change, Block>;

/// A refused client frame. `client_id` is the send's id when it had a readable one, so
/// the client can tell which message failed.
struct Refusal {
  FrameError error;
  std::string client_id;
};

/// Parses one v2 client frame. Unknown fields are ignored; a `sender` field, if any, is
/// ignored too (v2 never takes the sender from the client). Never throws.
std::variant<ClientFrame, Refusal> parse_client_frame(std::string_view payload,
                                                      const FrameLimits& limits);

/// A message to send as a JSON object `{"client_id":…,"text":…}` without `type`
/// (the body of the REST API's POST), checked as a v2 send is.
std::variant<Send, Refusal> parse_send_body(std::string_view body, const FrameLimits& limits);

/// An edit as a JSON object `{"text":…,"client_id":…}` (client_id optional), the body
/// of the REST API's PATCH, checked as a v2 edit is.
std::variant<Change, Refusal> parse_edit_body(std::string_view body, const FrameLimits& limits);

/// What the hello frame says about the chat.
struct Hello {
  std::string_view chat;  ///< The chat key, e.g. "5:alice:bob".
  std::string_view me;
  std::string_view peer;
  std::size_t peer_devices = 0;    ///< The peer's open connections (0 = offline).
  std::uint64_t last_seq = 0;      ///< The chat's newest message, 0 when it has none.
  std::uint64_t resume_after = 0;  ///< Set when the client resumes (`?after=`).
  bool resuming = false;
  std::uint64_t my_read_seq = 0;    ///< How far "me" has read (on any device).
  std::uint64_t peer_read_seq = 0;  ///< How far the peer has read.
  std::uint64_t first_seq = 0;      ///< The oldest kept entry (retention), 0 = none.
  bool blocking = false;            ///< "me" blocks the peer.
  bool blocked = false;             ///< The peer blocks "me".
};

std::string hello_frame(const Hello& hello);
/// `{"type":"history","messages":[…oldest first…],"has_more":…}`.
std::string history_frame(std::span<const MessagePtr> messages, bool has_more);
/// The same frame with only the newest of `messages` whose frame keeps it
/// within `max_bytes` (at least one): the older ones are left out and
/// `has_more` is then true, so that the client asks for them next.
std::string history_frame_within(std::span<const MessagePtr> messages, bool has_more,
                                 std::size_t max_bytes);
/// `{"type":"ack","client_id":…,"id":…,"seq":…,"ts":…,"duplicate":…}`.
std::string ack_frame(const Message& message, bool duplicate);
std::string typing_frame(std::string_view user, bool typing);
/// `{"type":"presence","user":…,"online":devices>0,"devices":…}`.
std::string presence_frame(std::string_view user, std::size_t devices);
std::string read_frame(std::string_view user, std::uint64_t seq);
std::string pong_frame();
/// An error frame that names the send it refers to (`client_id` omitted when empty).
std::string error_frame(std::string_view code, std::string_view message,
                        std::string_view client_id);

}  // namespace chatd::chat::v2
