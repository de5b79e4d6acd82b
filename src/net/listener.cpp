#include "net/listener.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "net/http_session.h"

namespace chatd::net {
namespace asio = boost::asio;
using asio::ip::tcp;

Listener::Listener(asio::io_context& io, const tcp::endpoint& endpoint, const Services& services)
    : io_(io),
      acceptor_(asio::make_strand(io)),
      retry_timer_(acceptor_.get_executor()),
      services_(services) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

void Listener::start() {
  asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->accept_next(); });
}

void Listener::stop() {
  asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ignored;
    self->retry_timer_.cancel();
    self->acceptor_.close(ignored);
  });
}

void Listener::accept_next() {
  acceptor_.async_accept(
      asio::make_strand(io_),
      [self = shared_from_this()](boost::system::error_code error, tcp::socket socket) {
        if (error == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
        if (error) {
          // Out of file descriptors or memory: retrying at once would spin.
          spdlog::warn("accept failed: {}; retrying in 100 ms", error.message());
          self->retry_timer_.expires_after(std::chrono::milliseconds(100));
          self->retry_timer_.async_wait([self](boost::system::error_code wait_error) {
            if (!wait_error) self->accept_next();
          });
          return;
        }
        socket.set_option(tcp::no_delay(true), error);
        std::make_shared<HttpSession>(std::move(socket), self->services_)->start();
        self->accept_next();
      });
}

}  // namespace chatd::net
