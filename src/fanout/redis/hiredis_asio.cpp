#include "fanout/redis/hiredis_asio.h"

#include <hiredis/async.h>

namespace chatd::fanout::redis {
namespace asio = boost::asio;

std::shared_ptr<HiredisAsio> HiredisAsio::attach(Strand strand, redisAsyncContext& context,
                                                 Cleanup cleanup) {
  auto attached = std::make_shared<HiredisAsio>(std::move(strand), context, std::move(cleanup));
  context.ev.data = attached.get();
  context.ev.addRead = &HiredisAsio::add_read;
  context.ev.delRead = &HiredisAsio::del_read;
  context.ev.addWrite = &HiredisAsio::add_write;
  context.ev.delWrite = &HiredisAsio::del_write;
  context.ev.cleanup = &HiredisAsio::cleanup;
  return attached;
}

HiredisAsio::HiredisAsio(Strand strand, redisAsyncContext& context, Cleanup cleanup)
    : context_(&context),
      descriptor_(strand, context.c.fd),
      on_cleanup_(std::move(cleanup)),
      read_{asio::posix::descriptor_base::wait_read, &redisAsyncHandleRead},
      write_{asio::posix::descriptor_base::wait_write, &redisAsyncHandleWrite} {}

void HiredisAsio::arm(Direction HiredisAsio::*which) {
  Direction& direction = this->*which;
  if (direction.waiting || context_ == nullptr) return;
  direction.waiting = true;
  descriptor_.async_wait(
      direction.wait, [self = shared_from_this(), which](const boost::system::error_code& error) {
        Direction& d = self.get()->*which;
        d.waiting = false;
        if (error || self->context_ == nullptr || !d.wanted) return;
        d.handle(self->context_);  // may end the context
        if (self->context_ != nullptr && d.wanted) self->arm(which);
      });
}

void HiredisAsio::add_read(void* data) {
  of(data).read_.wanted = true;
  of(data).arm(&HiredisAsio::read_);
}

void HiredisAsio::del_read(void* data) {
  of(data).read_.wanted = false;
}

void HiredisAsio::add_write(void* data) {
  of(data).write_.wanted = true;
  of(data).arm(&HiredisAsio::write_);
}

void HiredisAsio::del_write(void* data) {
  of(data).write_.wanted = false;
}

void HiredisAsio::cleanup(void* data) {
  HiredisAsio& self = of(data);
  if (self.context_ != nullptr && self.on_cleanup_) self.on_cleanup_(*self.context_);
  self.context_ = nullptr;
  self.read_.wanted = self.write_.wanted = false;
  boost::system::error_code ignored;
  self.descriptor_.cancel(ignored);
  self.descriptor_.release();  // hiredis closes the descriptor
}

}  // namespace chatd::fanout::redis
