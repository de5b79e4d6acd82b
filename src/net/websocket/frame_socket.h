#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace chatd::net::websocket {

/// The TCP socket under a session's WebSocket stream
/// (`beast::websocket::stream<FrameSocket>`), through which chatd writes its
/// text frames many at a time.
///
/// Beast's stream writes one message per call: each queued frame cost its own
/// write operation, strand hop and `sendmsg`. write_frames() instead frames
/// every text frame the session has queued (RFC 6455 §5.2: FIN, opcode 1,
/// the length, no mask from a server) and sends them in one gather write.
///
/// It stays correct beside the frames Beast still writes itself — the
/// handshake's response, pongs, keep-alive pings, close frames — because every
/// write passes here and one write at a time reaches the socket: a write that
/// arrives while another is in progress waits its turn, in arrival order, and
/// each completes (its handler runs) only once its bytes are written, so Beast
/// keeps its own rule of one write at a time and its close is never cut short
/// by its teardown. The session writes frames only while the stream is open
/// (`is_open()`, which Beast clears before it writes a close frame), so no
/// frame follows a close.
///
/// Strand only, like the stream above it. The write state lives apart from
/// the socket (a shared State), since a write's completion can come after the
/// stream (and this object) is gone.
class FrameSocket {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;
  using Frames = std::span<const std::shared_ptr<const std::string>>;
  using WriteHandler =
      boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

  explicit FrameSocket(socket_type socket) : socket_(std::move(socket)) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  socket_type& next_layer() noexcept { return socket_; }
  const socket_type& next_layer() const noexcept { return socket_; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return socket_.async_read_some(buffers, std::forward<Token>(token));
  }

  /// Beast's writes: the whole buffer sequence, in turn with every other write.
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& sequence) {
          Write write{WriteHandler(std::move(handler))};
          for (auto it = boost::asio::buffer_sequence_begin(sequence);
               it != boost::asio::buffer_sequence_end(sequence); ++it) {
            write.buffers.emplace_back(*it);
          }
          enqueue(std::move(write));
        },
        token, buffers);
  }

  /// Writes `frames` as text frames, after everything queued before them, in
  /// one write; `handler` gets the bytes written (headers included) or the
  /// error. As with Asio's buffers, the caller keeps the frames until then
  /// (the session keeps its batch until the handler has run).
  void write_frames(Frames frames, WriteHandler handler);

 private:
  struct Write {
    // Boost 1.81's any_completion_handler move-assigns by wrapping the source
    // in another (endlessly): a Write gets its handler at construction only.
    explicit Write(WriteHandler done) : handler(std::move(done)) {}
    std::vector<boost::asio::const_buffer> buffers;
    std::vector<char> headers;  // and their headers (on the heap: a move keeps them in place)
    WriteHandler handler;
  };
  struct State;

  void enqueue(Write write);

  socket_type socket_;
  std::shared_ptr<State> state_;  // made by the first write
};

// Beast's teardown of the connection (after a close): that of the TCP socket.
void teardown(boost::beast::role_type role, FrameSocket& socket, boost::system::error_code& error);

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, FrameSocket& socket, TeardownHandler&& handler) {
  boost::beast::websocket::async_teardown(role, socket.next_layer(),
                                          std::forward<TeardownHandler>(handler));
}

}  // namespace chatd::net::websocket
