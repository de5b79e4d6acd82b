#include "chat/message.h"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <vector>

namespace chatd::chat {
namespace {

struct ProcessRandom {
  std::array<unsigned char, 5> bytes{};
  std::uint32_t counter_start = 0;
  ProcessRandom() {
    std::array<unsigned char, 8> random{};
    // RAND_bytes only fails when the OS entropy source is broken; the id then
    // still is unique per process through the counter and the clock.
    (void)RAND_bytes(random.data(), static_cast<int>(random.size()));
    std::copy_n(random.begin(), bytes.size(), bytes.begin());
    counter_start = random[5] | (random[6] << 8) | (random[7] << 16);
  }
};

const ProcessRandom& process_random() {
  static const ProcessRandom value;
  return value;
}

}  // namespace

std::string make_message_id(std::int64_t timestamp_ms) {
  static std::atomic<std::uint32_t> counter{process_random().counter_start};
  const auto seconds = static_cast<std::uint32_t>(timestamp_ms / 1000);
  const std::uint32_t count = counter.fetch_add(1, std::memory_order_relaxed) & 0xFFFFFF;
  const auto& random = process_random().bytes;
  char out[25];
  std::snprintf(out, sizeof out, "%08x%02x%02x%02x%02x%02x%06x", seconds, random[0], random[1],
                random[2], random[3], random[4], count);
  return std::string(out, 24);
}

std::optional<std::uint32_t> made_here_counter(std::string_view id) {
  if (!made_here(id)) return std::nullopt;
  std::uint32_t counter = 0;
  const std::string_view hex = id.substr(18, 6);
  const auto [end, error] = std::from_chars(hex.data(), hex.data() + hex.size(), counter, 16);
  if (error != std::errc() || end != hex.data() + hex.size()) return std::nullopt;
  return counter;
}

bool made_here(std::string_view id) {
  static const std::string mine = [] {
    const auto& random = process_random().bytes;
    char out[11];
    std::snprintf(out, sizeof out, "%02x%02x%02x%02x%02x", random[0], random[1], random[2],
                  random[3], random[4]);
    return std::string(out, 10);
  }();
  return id.size() == 24 && id.substr(8, 10) == mine;
}

namespace {

struct OriginBook {
  static constexpr std::size_t kSize = 1 << 16;
  struct Slot {
    std::uint32_t counter = 0;
    ConnectionId origin = 0;
  };
  std::atomic<bool> enabled{false};
  std::mutex mutex;
  std::vector<Slot> slots;  // guarded by mutex; kSize once enabled
};

OriginBook& origin_book() {
  static OriginBook book;
  return book;
}

}  // namespace

void enable_origin_book() {
  OriginBook& book = origin_book();
  std::lock_guard lock(book.mutex);
  book.slots.resize(OriginBook::kSize);
  book.enabled.store(true, std::memory_order_release);
}

void note_origin(std::string_view id, ConnectionId origin) {
  OriginBook& book = origin_book();
  if (origin == 0 || !book.enabled.load(std::memory_order_acquire)) return;
  const auto counter = made_here_counter(id);
  if (!counter) return;
  std::lock_guard lock(book.mutex);
  book.slots[*counter % OriginBook::kSize] = OriginBook::Slot{*counter, origin};
}

ConnectionId noted_origin(std::string_view id) {
  OriginBook& book = origin_book();
  if (!book.enabled.load(std::memory_order_acquire)) return 0;
  const auto counter = made_here_counter(id);
  if (!counter) return 0;
  std::lock_guard lock(book.mutex);
  const OriginBook::Slot& slot = book.slots[*counter % OriginBook::kSize];
  return slot.counter == *counter ? slot.origin : 0;
}

std::string format_timestamp(std::int64_t timestamp_ms) {
  const std::time_t seconds = static_cast<std::time_t>(timestamp_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char out[32];
  const int length = std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                                   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                                   utc.tm_min, utc.tm_sec, static_cast<int>(timestamp_ms % 1000));
  return std::string(out, static_cast<std::size_t>(length));
}

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace chatd::chat
