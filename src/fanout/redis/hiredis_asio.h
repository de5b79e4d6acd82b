#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>
#include <functional>
#include <memory>

struct redisAsyncContext;

namespace chatd::fanout::redis {

/// Drives one hiredis asynchronous context from Asio: hiredis says when it
/// wants to read or write (its ev hooks), and a readiness wait on the
/// context's socket, on the strand, calls it back. So no thread ever blocks on
/// Redis, and hiredis (which is not thread-safe) runs only on the strand.
///
/// Lives until hiredis's cleanup hook and the last wait are done; the owner
/// keeps it until then (the cleanup callback tells it).
class HiredisAsio : public std::enable_shared_from_this<HiredisAsio> {
 public:
  using Strand = boost::asio::strand<boost::asio::any_io_executor>;
  /// hiredis is freeing the context (and closes its socket itself); called
  /// from within that, on the strand.
  using Cleanup = std::function<void(const redisAsyncContext& context)>;

  /// Hooks `context` (just made by redisAsyncConnect) to the strand.
  static std::shared_ptr<HiredisAsio> attach(Strand strand, redisAsyncContext& context,
                                             Cleanup cleanup);

  HiredisAsio(Strand strand, redisAsyncContext& context, Cleanup cleanup);

 private:
  /// One direction of the socket: hiredis wants it (its add/del hooks), and
  /// whether a readiness wait for it is pending.
  struct Direction {
    boost::asio::posix::descriptor_base::wait_type wait;
    void (*handle)(redisAsyncContext*);
    bool wanted = false;
    bool waiting = false;
  };

  void arm(Direction HiredisAsio::*which);
  static HiredisAsio& of(void* data) { return *static_cast<HiredisAsio*>(data); }
  static void add_read(void* data);
  static void del_read(void* data);
  static void add_write(void* data);
  static void del_write(void* data);
  static void cleanup(void* data);

  redisAsyncContext* context_;
  boost::asio::posix::stream_descriptor descriptor_;
  Cleanup on_cleanup_;
  Direction read_;
  Direction write_;
};

}  // namespace chatd::fanout::redis
