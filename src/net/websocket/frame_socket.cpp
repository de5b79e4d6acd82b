#include "net/websocket/frame_socket.h"

#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/container/devector.hpp>

namespace chatd::net::websocket {
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

constexpr unsigned char kFinText = 0x81;  // FIN, opcode 1 (text)
constexpr std::size_t kMaxHeader = 10;
// Buffers kept for the next write once one is done; a burst's bigger ones go.
constexpr std::size_t kKeptBuffers = 64;

/// Appends the header of an unmasked text frame of `size` bytes (RFC 6455 §5.2).
void append_header(std::vector<char>& headers, std::size_t size) {
  headers.push_back(static_cast<char>(kFinText));
  if (size < 126) {
    headers.push_back(static_cast<char>(size));
  } else if (size <= 0xFFFF) {
    headers.push_back(static_cast<char>(126));
    headers.push_back(static_cast<char>(size >> 8));
    headers.push_back(static_cast<char>(size & 0xFF));
  } else {
    headers.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      headers.push_back(static_cast<char>((static_cast<std::uint64_t>(size) >> shift) & 0xFF));
    }
  }
}

}  // namespace

struct FrameSocket::State {
  explicit State(socket_type& on) : socket(on), executor(on.get_executor()) {}

  /// Writes what waits, all of it at once.
  static void start(const std::shared_ptr<State>& state) {
    State& self = *state;
    self.busy = true;
    std::swap(self.writing, self.waiting);
    self.gather.clear();
    for (const Write& write : self.writing) {
      self.gather.insert(self.gather.end(), write.buffers.begin(), write.buffers.end());
    }
    asio::async_write(self.socket, self.gather,
                      [state](const error_code& error, std::size_t) { done(state, error); });
  }

  static void done(const std::shared_ptr<State>& state, const error_code& error) {
    State& self = *state;
    self.busy = false;
    if (error) self.failed = error;
    auto written = std::move(self.writing);
    self.writing.clear();
    // An idle connection keeps no buffer list (and a burst's long one goes).
    if (self.waiting.empty() || self.gather.capacity() > kKeptBuffers) {
      decltype(self.gather)().swap(self.gather);
    }
    // What waits goes out before the handlers run: a handler may queue more.
    if (!self.waiting.empty() && !self.failed) start(state);
    for (Write& write : written) {
      std::size_t bytes = 0;
      for (const auto& buffer : write.buffers) bytes += buffer.size();
      std::move(write.handler)(error, error ? 0 : bytes);
    }
    if (self.failed && !self.waiting.empty()) fail_waiting(self);
  }

  /// After a failed write nothing more can go out: what waits gets the error.
  static void fail_waiting(State& self) {
    auto waiting = std::move(self.waiting);
    self.waiting.clear();
    for (Write& write : waiting) {
      asio::post(self.executor,
                 asio::append([handler = std::move(write.handler)](
                                  error_code error) mutable { std::move(handler)(error, 0); },
                              self.failed));
    }
  }

  // The socket outlives every write that may start on it: a write starts only
  // while a handler of an earlier one is still to run (start() comes before
  // them), and chatd's handlers hold the session; `executor` is a copy, for
  // failures that come after the socket is gone.
  socket_type& socket;
  executor_type executor;
  boost::container::devector<Write> waiting;
  boost::container::devector<Write> writing;
  std::vector<asio::const_buffer> gather;
  error_code failed;
  bool busy = false;
};

void FrameSocket::enqueue(Write write) {
  if (!state_) state_ = std::make_shared<State>(socket_);
  state_->waiting.push_back(std::move(write));
  if (state_->failed) {
    State::fail_waiting(*state_);
  } else if (!state_->busy) {
    State::start(state_);
  }
}

void FrameSocket::write_frames(Frames frames, WriteHandler handler) {
  Write write{std::move(handler)};
  // Reserved in full, so the headers never move while buffers point at them.
  write.headers.reserve(frames.size() * kMaxHeader);
  write.buffers.reserve(2 * frames.size());
  for (const auto& frame : frames) {
    const std::size_t at = write.headers.size();
    append_header(write.headers, frame->size());
    write.buffers.emplace_back(write.headers.data() + at, write.headers.size() - at);
    write.buffers.emplace_back(frame->data(), frame->size());
  }
  enqueue(std::move(write));
}

void teardown(boost::beast::role_type role, FrameSocket& socket, error_code& error) {
  boost::beast::websocket::teardown(role, socket.next_layer(), error);
}

}  // namespace chatd::net::websocket
