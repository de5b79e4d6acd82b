#include "fanout/redis/store_catch_up.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <memory>

#include "metrics/registry.h"
#include "store/store.h"

namespace chatd::fanout::redis {
namespace asio = boost::asio;

namespace {

/// Messages read per round of a fill.
constexpr std::size_t kFillPage = 500;
/// Seqs sealed per fill at most (the next fill seals on).
constexpr std::uint64_t kMaxSealed = 1024;

}  // namespace

StoreCatchUp::StoreCatchUp(RedisConnection::Strand strand, store::Store& store,
                           ChatSequencer& sequencer, metrics::Counter& gap_fills,
                           metrics::Counter& sealed, Options options)
    : strand_(std::move(strand)),
      store_(store),
      sequencer_(sequencer),
      gap_fills_(gap_fills),
      sealed_(sealed),
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
  store_.history(chat, query,
                 asio::bind_executor(strand_, [this, chat, after_seq](store::HistoryPage page) {
                   if (page.error != store::StoreError::none) {
                     sequencer_.fill_failed(chat);
                     return;
                   }
                   seal_hole(chat, after_seq, page);
                   sequencer_.fill(chat, page.messages);
                   if (page.has_more && !page.messages.empty()) {
                     fill(chat, page.messages.back()->seq);
                   }
                 }));
}

void StoreCatchUp::seal_hole(const chat::ChatKey& chat, std::uint64_t after_seq,
                             const store::HistoryPage& page) {
  if (page.messages.empty()) return;
  std::uint64_t last = after_seq;
  const chat::MessagePtr* after_hole = nullptr;
  for (const auto& message : page.messages) {
    if (message->seq > last + 1) {
      after_hole = &message;
      break;
    }
    last = message->seq;
  }
  if (after_hole == nullptr) return;
  const std::int64_t age_ms = chat::now_ms() - (*after_hole)->timestamp_ms;
  if (age_ms < options_.seal_after.count()) return;  // its writer may still be at it
  const std::uint64_t to = std::min((*after_hole)->seq - 1, last + kMaxSealed);
  spdlog::warn("chat {}: seqs {}..{} were reserved and never written; sealing them", chat.str(),
               last + 1, to);
  for (std::uint64_t seq = last + 1; seq <= to; ++seq) {
    chat::PendingMessage filler{chat, {}, {}, {}, 0};
    filler.kind = chat::EntryKind::filler;
    filler.target = seq;
    // Once committed, the filler comes back through the commit listener and
    // the sequencer delivers on past it; refused (an entry is there), the
    // next fill reads that entry.
    store_.append(std::move(filler), [](store::AppendResult) {});
  }
  sealed_.inc(to - last);
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
