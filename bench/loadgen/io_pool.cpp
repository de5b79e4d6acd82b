#include "loadgen/io_pool.h"

#include <exception>
#include <iostream>

namespace chatd::loadgen {

IoPool::IoPool(unsigned threads) {
  for (unsigned i = 0; i < threads; ++i) {
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    guards_.push_back(boost::asio::make_work_guard(*contexts_.back()));
  }
}

IoPool::~IoPool() {
  finish(std::chrono::milliseconds(0));
}

void IoPool::start() {
  for (auto& context : contexts_) {
    running_.fetch_add(1);
    threads_.emplace_back([this, io = context.get()] {
      try {
        io->run();
      } catch (const std::exception& error) {
        // Handlers report their errors through counters; a throw is a bug.
        std::cerr << "loadgen thread failed: " << error.what() << "\n";
        std::terminate();
      }
      running_.fetch_sub(1);
    });
  }
}

void IoPool::finish(std::chrono::milliseconds patience) {
  for (auto& guard : guards_) guard.reset();
  wait_for([this] { return running_.load() == 0; }, patience);
  for (auto& context : contexts_) context->stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

bool wait_for(const std::function<bool()>& done, std::chrono::steady_clock::duration limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace chatd::loadgen
