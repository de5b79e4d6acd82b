#include "fanout/redis/wire_format.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace chatd::fanout::redis {
namespace {

chat::ChatKey alice_bob() {
  return *chat::ChatKey::parse("5:alice:bob");
}

TEST(WireFormat, ChannelNamesRoundTrip) {
  const auto chat = alice_bob();
  EXPECT_EQ(channel_of(chat), "chatd:chat:5:alice:bob");
  ASSERT_TRUE(chat_of_channel(channel_of(chat)));
  EXPECT_EQ(chat_of_channel(channel_of(chat))->str(), chat.str());
  EXPECT_FALSE(chat_of_channel(kResyncChannel));
  EXPECT_FALSE(chat_of_channel("chatd:chat:"));
  EXPECT_FALSE(chat_of_channel("chatd:chat:not a key"));
}

TEST(WireFormat, PresenceKeysOfDifferentPairsDiffer) {
  const auto chat = alice_bob();
  EXPECT_EQ(presence_key(chat, "alice"), "chatd:presence:5:alice:5:alice:bob");
  EXPECT_NE(presence_key(chat, "alice"), presence_key(chat, "bob"));
}

TEST(WireFormat, MessageRoundTrip) {
  chat::Message message(alice_bob());
  message.seq = 42;
  message.id = "0123456789abcdef01234567";
  message.sender = "bob";
  message.text = "quotes \" and \\ and \xc3\xa9 and a\nnewline";
  message.timestamp_ms = 1'700'000'000'123;
  message.client_id = "c-1";
  const auto decoded = decode_publish(alice_bob(), encode_message("instance-a", message));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->kind, Publish::Kind::message);
  EXPECT_EQ(decoded->from, "instance-a");
  ASSERT_TRUE(decoded->message);
  const chat::Message& got = *decoded->message;
  EXPECT_EQ(got.chat.str(), message.chat.str());
  EXPECT_EQ(got.seq, 42u);
  EXPECT_EQ(got.id, message.id);
  EXPECT_EQ(got.sender, "bob");
  EXPECT_EQ(got.text, message.text);
  EXPECT_EQ(got.timestamp_ms, message.timestamp_ms);
  EXPECT_EQ(got.client_id, "c-1");
  EXPECT_EQ(got.origin, 0u) << "a message from elsewhere has no local connection";
}

TEST(WireFormat, EventPresenceAndResyncRoundTrip) {
  const std::string frame = R"({"type":"typing","user":"alice","typing":true})";
  auto decoded = decode_publish(alice_bob(), encode_event("b", frame));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->kind, Publish::Kind::event);
  EXPECT_EQ(decoded->from, "b");
  EXPECT_EQ(decoded->frame, frame);

  decoded = decode_publish(alice_bob(), encode_presence("c", "alice", Presence{3, 17}));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->kind, Publish::Kind::presence);
  EXPECT_EQ(decoded->user, "alice");
  EXPECT_EQ(decoded->presence.devices, 3u);
  EXPECT_EQ(decoded->presence.version, 17u);

  EXPECT_EQ(decode_resync(encode_resync("d")), "d");
}

TEST(WireFormat, RefusesWhatChatdDoesNotPublish) {
  const auto chat = alice_bob();
  const auto refused = [&chat](std::string_view payload) {
    return !decode_publish(chat, payload).has_value();
  };
  EXPECT_TRUE(refused(""));
  EXPECT_TRUE(refused("not json"));
  EXPECT_TRUE(refused("[1,2]"));
  EXPECT_TRUE(refused(R"({"kind":"message"})")) << "no sender instance";
  EXPECT_TRUE(refused(R"({"from":"a"})")) << "no kind";
  EXPECT_TRUE(refused(R"({"from":"a","kind":"shout"})")) << "unknown kind";
  EXPECT_TRUE(refused(R"({"from":1,"kind":"event","frame":"{}"})"));
  EXPECT_TRUE(refused(R"({"from":"a","kind":"event"})")) << "event without a frame";
  EXPECT_TRUE(refused(R"({"from":"a","kind":"event","frame":{}})"));

  const std::string good_message =
      R"({"from":"a","kind":"message","id":"x","seq":1,"sender":"alice","text":"hi","ts":5,"client_id":""})";
  EXPECT_FALSE(refused(good_message));
  const auto with = [](std::string payload, std::string_view from, std::string_view to) {
    return payload.replace(payload.find(from), from.size(), to);
  };
  EXPECT_TRUE(refused(with(good_message, R"("seq":1)", R"("seq":0)"))) << "seqs start at 1";
  EXPECT_TRUE(refused(with(good_message, R"("seq":1)", R"("seq":-1)")));
  EXPECT_TRUE(refused(with(good_message, R"("seq":1)", R"("seq":"1")")));
  EXPECT_TRUE(refused(with(good_message, R"("seq":1,)", "")));
  EXPECT_TRUE(refused(with(good_message, R"("sender":"alice")", R"("sender":"mallory")")))
      << "the sender must be in the chat";
  EXPECT_TRUE(refused(with(good_message, R"("text":"hi")", R"("text":null)")));
  EXPECT_TRUE(refused(with(good_message, R"("ts":5)", R"("ts":1.5)")));
  EXPECT_TRUE(refused(with(good_message, R"("id":"x",)", "")));

  const std::string good_presence =
      R"({"from":"a","kind":"presence","user":"bob","devices":2,"version":9})";
  EXPECT_FALSE(refused(good_presence));
  EXPECT_TRUE(refused(with(good_presence, R"("version":9)", R"("version":0)")))
      << "only Redis's versioned answers are published";
  EXPECT_TRUE(refused(with(good_presence, R"("user":"bob")", R"("user":"carol")")));
  EXPECT_TRUE(refused(with(good_presence, R"("devices":2)", R"("devices":-2)")));

  EXPECT_FALSE(decode_resync("nope"));
  EXPECT_FALSE(decode_resync(R"({"from":7})"));
}

}  // namespace
}  // namespace chatd::fanout::redis
