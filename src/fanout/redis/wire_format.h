#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "chat/message.h"

namespace chatd::fanout::redis {

/// What chatd instances say to each other through Redis: the names of the
/// channels and keys, and the JSON of every publish. Pure: no I/O, so it is
/// unit-tested on its own (tests/unit/fanout/redis/wire_format_test.cpp).
///
/// Every publish is a JSON object with "from" (the instance that sent it: an
/// instance drops its own) and "kind": "message" (a committed message),
/// "event" (a v2 frame: typing, read receipt) or "presence" (a user's devices
/// over every instance). The resync channel carries only {"from"}.

/// A chat's channel: "chatd:chat:" + its key.
inline constexpr std::string_view kChannelPrefix = "chatd:chat:";
/// An instance whose publishes did not all go out (its publisher was down, or
/// its output was full) says so here once they go out again; the others
/// re-read their chats from the store.
inline constexpr std::string_view kResyncChannel = "chatd:resync";

std::string channel_of(const chat::ChatKey& chat);
/// The chat whose channel `channel` is; nullopt for any other name.
std::optional<chat::ChatKey> chat_of_channel(std::string_view channel);
/// The Redis hash of `user`'s presence in `chat` (presence_script.h).
std::string presence_key(const chat::ChatKey& chat, const std::string& user);

/// A user's connections to a chat on every instance, as Redis answered at
/// `version` (0: Redis did not answer; this instance's own count).
struct Presence {
  std::size_t devices = 0;
  std::uint64_t version = 0;
};

std::string encode_message(std::string_view instance, const chat::Message& message);
std::string encode_event(std::string_view instance, std::string_view frame);
/// Only versioned presence is published (an answer of Redis).
std::string encode_presence(std::string_view instance, std::string_view user, Presence presence);
std::string encode_resync(std::string_view instance);

/// One publish read from a chat's channel.
struct Publish {
  enum class Kind { message, event, presence };
  Kind kind = Kind::message;
  std::string from;          ///< the instance that published it
  chat::MessagePtr message;  ///< kind message
  std::string frame;         ///< kind event: the v2 frame, as sent to connections
  std::string user;          ///< kind presence
  Presence presence;         ///< kind presence: always versioned
};

/// Reads a publish of `chat`'s channel. nullopt for anything chatd does not
/// publish: not JSON, an unknown kind, a field missing or of the wrong type, a
/// message with seq 0 or from someone not in the chat, a presence of someone
/// not in the chat or without a version. Redis is shared: input is untrusted.
std::optional<Publish> decode_publish(const chat::ChatKey& chat, std::string_view payload);
/// The sender of a resync; nullopt when malformed.
std::optional<std::string> decode_resync(std::string_view payload);

}  // namespace chatd::fanout::redis
