#include "fanout/redis/store_catch_up.h"

#include <boost/asio/bind_executor.hpp>
#include <memory>

#include "metrics/registry.h"
#include "store/store.h"

namespace chatd::fanout::redis {
namespace asio = boost::asio;

namespace {

/// Messages read per round of a fill.
constexpr std::size_t kFillPage = 500;

}  // namespace

StoreCatchUp::StoreCatchUp(RedisConnection::Strand strand, store::Store& store,
                           ChatSequencer& sequencer, metrics::Counter& gap_fills, Options options)
    : strand_(std::move(strand)),
      store_(store),
      sequencer_(sequencer),
      gap_fills_(gap_fills),
      options_(options),
      gap_timer_(strand_) {}

void StoreCatchUp::start() {
  schedule_gap_check();
}

void StoreCatchUp::stop() {
  gap_timer_.cancel();
}

void StoreCatchUp::sync(const chat::ChatKey& chat) {
  if (sequencer_.synced(chat)) {
    fill(chat, sequencer_.delivered(chat));
    return;
  }
  store::HistoryQuery query;
  query.limit = options_.sync_messages;
  query.messages_only = false;  // the chat's whole order: changes have seqs too
  store_.history(chat, query, asio::bind_executor(strand_, [this, chat](store::HistoryPage page) {
                   if (page.error != store::StoreError::none) {
                     // Held until the store answers; asked again after the hold.
                     auto timer = std::make_shared<asio::steady_timer>(strand_, options_.gap_hold);
                     timer->async_wait([this, chat, timer](boost::system::error_code error) {
                       if (!error && sequencer_.following(chat)) sync(chat);
                     });
                     return;
                   }
                   sequencer_.sync(chat, page.messages);
                 }));
}

void StoreCatchUp::fill(const chat::ChatKey& chat, std::uint64_t after_seq) {
  store::HistoryQuery query;
  query.after_seq = after_seq;
  query.oldest_first = true;
  query.limit = kFillPage;
  query.messages_only = false;
  store_.history(chat, query, asio::bind_executor(strand_, [this, chat](store::HistoryPage page) {
                   if (page.error != store::StoreError::none) {
                     sequencer_.fill_failed(chat);
                     return;
                   }
                   sequencer_.fill(chat, page.messages);
                   if (page.has_more && !page.messages.empty()) {
                     fill(chat, page.messages.back()->seq);
                   }
                 }));
}

void StoreCatchUp::recover_all() {
  for (const auto& chat : sequencer_.followed()) {
    if (sequencer_.synced(chat)) fill(chat, sequencer_.delivered(chat));
  }
}

void StoreCatchUp::schedule_gap_check() {
  gap_timer_.expires_after(
      std::max<std::chrono::milliseconds>(options_.gap_hold / 4, std::chrono::milliseconds(5)));
  gap_timer_.async_wait([this](boost::system::error_code error) {
    if (error) return;
    for (const auto& request : sequencer_.due(ChatSequencer::Clock::now())) {
      gap_fills_.inc();
      fill(request.chat, request.after_seq);
    }
    schedule_gap_check();
  });
}

}  // namespace chatd::fanout::redis
