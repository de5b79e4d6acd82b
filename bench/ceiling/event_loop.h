// chatd_ceiling's server: one thread, one epoll loop, non-blocking sockets.
// Hand-written on purpose: chatd_ceiling is the floor chatd is measured
// against, so it relays (and in persist mode stores) messages with raw epoll
// and nothing between the socket and the work.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ceiling/chat_frames.h"
#include "ceiling/sqlite_log.h"

namespace chatd::ceiling {

/// A connection whose unsent output passes this is closed: a client that
/// never reads cannot grow the server's memory.
constexpr std::size_t kMaxPendingOutput = 8 * 1024 * 1024;

struct Chat;

struct Connection {
  enum class State {
    handshake,  ///< reading the upgrade request
    open,       ///< exchanging frames
    closing,    ///< a close frame (or a 400) is queued: written, then lingering
    lingering,  ///< our side shut down; input discarded until EOF or the deadline
  };

  int fd = -1;
  State state = State::handshake;
  bool dirty = false;       ///< in the loop's list of connections to write
  bool want_write = false;  ///< EPOLLOUT is registered: the socket was full
  bool dead = false;        ///< closed; freed at the end of the pass
  int side = 0;             ///< its user is chat->users[side]
  Chat* chat = nullptr;
  std::int64_t linger_until_ms = 0;
  std::string in;  ///< the upgrade request so far, or the start of a partial frame
  std::string out;
  std::size_t out_start = 0;  ///< out[0, out_start) is written
};

/// A chat: the unordered pair of its users and their open connections.
struct Chat {
  std::string key;  ///< chatd's ChatKey: `<len(first)>:<first>:<second>`
  std::string users[2];
  std::vector<Connection*> connections;
  std::uint64_t next_seq = 0;       ///< the last seq handed out
  std::uint64_t committed_seq = 0;  ///< persist: the last seq stored
  std::int64_t db_id = 0;           ///< persist: chats.id, 0 until the row exists
  bool in_batch = false;            ///< persist: has messages in the current batch
  bool inserted_in_batch = false;   ///< persist: its row is new in the current batch
};

class EventLoop {
 public:
  /// `log` is null in relay mode.
  explicit EventLoop(SqliteLog* log);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Binds and listens; returns the port (the one given, or the kernel's for
  /// 0). Throws std::runtime_error on failure.
  unsigned listen(const std::string& host, unsigned port);

  /// Runs until `stop_fd` (a signalfd) is readable.
  void run(int stop_fd);

 private:
  /// A message of the current batch (persist mode), delivered after COMMIT.
  struct Pending {
    Chat* chat;
    Connection* sender;  ///< may be dead by then; freed only after the pass
    int side;
    std::uint64_t seq;
    std::size_t frame_at;  ///< the frame is batch_frames_[frame_at, frame_at + frame_size)
    std::size_t frame_size;
    std::size_t text_at;  ///< the raw text is batch_frames_[text_at, text_at + text_size)
    std::size_t text_size;
    char id[24];
  };

  void accept_all();
  void on_readable(Connection& c);
  void on_handshake(Connection& c);
  /// Handles the whole frames in data[0, size); returns the bytes used.
  std::size_t on_frames(Connection& c, char* data, std::size_t size);
  void on_message(Connection& c, std::string_view payload);
  void join_chat(Connection& c, std::string_view user, std::string_view peer);

  void deliver(Chat& chat, int sender_side, std::string_view frame);
  /// Queues a close frame with `code`; the socket closes once it is written.
  void close_with(Connection& c, std::uint16_t code);
  void mark_dirty(Connection& c);
  /// After bytes were appended to c.out: closes c past kMaxPendingOutput.
  /// False when it did.
  bool check_output_bound(Connection& c);
  void flush(Connection& c);
  void flush_all();
  void commit_batch();
  void kill(Connection& c);
  void expire_lingering();
  void set_events(Connection& c, std::uint32_t events);

  SqliteLog* log_;
  int epoll_fd_ = -1;
  int listen_fd_ = -1;
  bool accept_paused_ = false;  ///< out of descriptors: the listener is off until one closes
  std::int64_t now_ms_ = 0;
  Timestamp ts_;
  IdMaker ids_;

  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> graveyard_;  ///< freed at the end of each pass
  std::unordered_map<std::string, std::unique_ptr<Chat>> chats_;
  std::vector<Connection*> dirty_;
  std::vector<Connection*> lingering_;

  std::string read_buffer_;
  std::string scratch_;  ///< one relayed frame; one message's unescaped text
  std::string chat_key_;

  std::vector<Pending> batch_;
  std::string batch_frames_;
  std::vector<Chat*> batch_chats_;
};

}  // namespace chatd::ceiling
