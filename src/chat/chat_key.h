#pragma once

#include <compare>
#include <optional>
#include <string>
#include <string_view>

namespace chatd::chat {

/// The identity of a one-to-one chat: the unordered pair of its two users.
///
/// The old service joined the sorted names with `_`, so ("a_b", "c") and
/// ("a", "b_c") shared one history. The key here is unambiguous: the first
/// name is length-prefixed, `<len(first)>:<first>:<second>`, e.g. `5:alice:bob`,
/// so no choice of names can make two different pairs collide.
class ChatKey {
 public:
  /// The chat of `a` and `b`, in either order (`of(a, b) == of(b, a)`).
  static ChatKey of(std::string_view a, std::string_view b);
  /// Parses a key made by str(); nullopt when malformed.
  static std::optional<ChatKey> parse(std::string_view key);

  const std::string& first() const { return first_; }
  const std::string& second() const { return second_; }
  const std::string& str() const { return key_; }

  bool has_participant(std::string_view user) const { return user == first_ || user == second_; }
  /// The other participant; `user` must be one of the two.
  const std::string& peer_of(std::string_view user) const {
    return user == first_ ? second_ : first_;
  }

  friend bool operator==(const ChatKey& a, const ChatKey& b) { return a.key_ == b.key_; }

 private:
  ChatKey(std::string first, std::string second);

  std::string first_;
  std::string second_;
  std::string key_;
};

}  // namespace chatd::chat
