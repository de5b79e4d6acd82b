// chatd_ceiling's server loop: one thread, one level-triggered epoll loop,
// non-blocking sockets, one write per connection per pass. Hand-written on
// purpose: chatd_ceiling is the floor chatd is measured against, so between
// a socket and the work (relay, or store and relay) there is nothing else.
#include "ceiling/event_loop.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "ceiling/websocket.h"

namespace chatd::ceiling {
namespace {

constexpr int kMaxEvents = 512;
constexpr std::size_t kReadBytes = 256 * 1024;
/// How long a closed connection's input is still read (so the kernel does not
/// answer it with a reset that could destroy our close frame) before it goes.
constexpr std::int64_t kLingerMs = 2000;
/// Buffers that grew past this are given back once empty.
constexpr std::size_t kShrinkAbove = 256 * 1024;

// epoll tags of the two descriptors that are not connections.
char listen_tag;
char stop_tag;

std::int64_t wall_ms() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

std::runtime_error system_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

void release_if_large(std::string& buffer) {
  if (buffer.empty() && buffer.capacity() > kShrinkAbove) std::string().swap(buffer);
}

}  // namespace

EventLoop::EventLoop(SqliteLog* log) : log_(log) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw system_error("epoll_create1");
  read_buffer_.resize(kReadBytes);
}

EventLoop::~EventLoop() {
  for (auto& [connection, owner] : connections_) ::close(connection->fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  ::close(epoll_fd_);
}

unsigned EventLoop::listen(const std::string& host, unsigned port) {
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) throw std::runtime_error("--host " + host + ": " + gai_strerror(rc));
  listen_fd_ = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    freeaddrinfo(found);
    throw system_error("socket");
  }
  const int yes = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  const int bound = bind(listen_fd_, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (bound != 0) throw system_error("bind " + host + ":" + std::to_string(port));
  if (::listen(listen_fd_, SOMAXCONN) != 0) throw system_error("listen");

  sockaddr_storage address{};
  socklen_t length = sizeof address;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  const unsigned actual = address.ss_family == AF_INET6
                              ? ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port)
                              : ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);

  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = &listen_tag;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &event) != 0) throw system_error("epoll_ctl");
  return actual;
}

// ---------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------

// One pass: wait, handle every ready descriptor (reading, parsing, relaying
// into output buffers; in persist mode collecting the batch), store the batch,
// deliver it, then write each connection with output once.
void EventLoop::run(int stop_fd) {
  epoll_event stop{};
  stop.events = EPOLLIN;
  stop.data.ptr = &stop_tag;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd, &stop) != 0) throw system_error("epoll_ctl");

  std::vector<epoll_event> events(kMaxEvents);
  bool stopping = false;
  while (!stopping) {
    const int timeout_ms = lingering_.empty() ? -1 : 500;
    const int ready = epoll_wait(epoll_fd_, events.data(), kMaxEvents, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      throw system_error("epoll_wait");
    }
    now_ms_ = wall_ms();
    ts_.set(now_ms_);
    for (int i = 0; i < ready; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &listen_tag) {
        accept_all();
        continue;
      }
      if (tag == &stop_tag) {
        stopping = true;
        continue;
      }
      auto* c = static_cast<Connection*>(tag);
      if (c->dead) continue;
      const std::uint32_t what = events[i].events;
      if ((what & EPOLLOUT) != 0 && !c->dirty) {
        c->dirty = true;
        dirty_.push_back(c);
      }
      if ((what & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) on_readable(*c);
    }
    if (log_ != nullptr) commit_batch();
    flush_all();
    if (!lingering_.empty()) expire_lingering();
    graveyard_.clear();
  }
}

void EventLoop::accept_all() {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: stop listening (level-triggered, it would spin)
        // until a connection closes.
        std::fprintf(stderr, "chatd_ceiling: accept: %s (raise ulimit -n)\n", std::strerror(errno));
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        accept_paused_ = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        std::fprintf(stderr, "chatd_ceiling: accept: %s\n", std::strerror(errno));
      }
      return;
    }
    const int yes = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    auto owner = std::make_unique<Connection>();
    Connection* c = owner.get();
    c->fd = fd;
    connections_.emplace(c, std::move(owner));
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = c;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
  }
}

// Level-triggered: one recv per readiness; what is left is reported again.
void EventLoop::on_readable(Connection& c) {
  char* data = read_buffer_.data();
  const ssize_t received = ::recv(c.fd, data, read_buffer_.size(), 0);
  if (received == 0) {
    kill(c);
    return;
  }
  if (received < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) kill(c);
    return;
  }
  const auto size = static_cast<std::size_t>(received);
  switch (c.state) {
    case Connection::State::closing:
    case Connection::State::lingering:
      return;  // discarded
    case Connection::State::handshake:
      c.in.append(data, size);
      on_handshake(c);
      return;
    case Connection::State::open:
      break;
  }
  if (c.in.empty()) {
    // The common case: whole frames parsed where they were read, only a
    // trailing partial frame copied.
    const std::size_t used = on_frames(c, data, size);
    if (c.state == Connection::State::open && used < size) c.in.assign(data + used, size - used);
  } else {
    c.in.append(data, size);
    const std::size_t used = on_frames(c, c.in.data(), c.in.size());
    if (c.state == Connection::State::open) {
      c.in.erase(0, used);
    } else {
      c.in.clear();
    }
    release_if_large(c.in);
  }
}

void EventLoop::on_handshake(Connection& c) {
  ws::Upgrade upgrade;
  std::size_t consumed = 0;
  switch (ws::parse_upgrade(c.in, upgrade, consumed)) {
    case ws::RequestStatus::incomplete:
      return;
    case ws::RequestStatus::bad:
      c.in.clear();
      release_if_large(c.in);
      c.out.append(ws::kBadRequest);
      c.state = Connection::State::closing;
      mark_dirty(c);
      return;
    case ws::RequestStatus::upgrade:
      break;
  }
  ws::append_switching_protocols(c.out, upgrade);
  join_chat(c, upgrade.user, upgrade.peer);
  c.state = Connection::State::open;
  mark_dirty(c);
  c.in.erase(0, consumed);
  if (!c.in.empty()) {
    const std::size_t used = on_frames(c, c.in.data(), c.in.size());
    c.in.erase(0, used);
  }
  if (c.state != Connection::State::open) c.in.clear();
  release_if_large(c.in);
}

void EventLoop::join_chat(Connection& c, std::string_view user, std::string_view peer) {
  const std::string_view first = std::min(user, peer);
  const std::string_view second = std::max(user, peer);
  chat_key_.clear();
  chat_key_.append(std::to_string(first.size()))
      .append(":")
      .append(first)
      .append(":")
      .append(second);
  auto found = chats_.find(chat_key_);
  if (found == chats_.end()) {
    auto chat = std::make_unique<Chat>();
    chat->key = chat_key_;
    chat->users[0] = first;
    chat->users[1] = second;
    // Persist: the chat's id and last seq, once, when it is first seen.
    if (log_ != nullptr) {
      if (const auto row = log_->find_chat(chat->key)) {
        chat->db_id = row->id;
        chat->next_seq = chat->committed_seq = row->last_seq;
      }
    }
    found = chats_.emplace(chat_key_, std::move(chat)).first;
  }
  Chat& chat = *found->second;
  c.chat = &chat;
  c.side = user == chat.users[0] ? 0 : 1;
  chat.connections.push_back(&c);
}

std::size_t EventLoop::on_frames(Connection& c, char* data, std::size_t size) {
  std::size_t used = 0;
  while (c.state == Connection::State::open && !c.dead) {
    ws::Frame frame;
    std::size_t consumed = 0;
    const ws::FrameStatus status = ws::parse_frame(data + used, size - used, frame, consumed);
    if (status == ws::FrameStatus::incomplete) break;
    if (status == ws::FrameStatus::too_big) {
      close_with(c, ws::kTooBig);
      break;
    }
    if (status == ws::FrameStatus::protocol_error) {
      close_with(c, ws::kProtocolError);
      break;
    }
    used += consumed;
    const std::string_view payload(frame.payload, frame.size);
    switch (frame.opcode) {
      case ws::kText:
        if (!frame.fin) {
          close_with(c, ws::kUnsupported);
        } else if (!ws::is_valid_utf8(frame.payload, frame.size)) {
          close_with(c, ws::kInvalidPayload);
        } else {
          on_message(c, payload);
        }
        break;
      case ws::kContinuation:
      case ws::kBinary:
        close_with(c, ws::kUnsupported);  // the load generator never sends them
        break;
      case ws::kPing:
        ws::append_frame(c.out, ws::kPong, payload);
        if (check_output_bound(c)) mark_dirty(c);
        break;
      case ws::kPong:
        break;
      case ws::kClose:
        if (frame.size == 1) {
          close_with(c, ws::kProtocolError);
        } else {
          // Echo the status code; the socket closes once the echo is written.
          ws::append_frame(c.out, ws::kClose, payload.substr(0, 2));
          c.state = Connection::State::closing;
          mark_dirty(c);
        }
        break;
      default:
        close_with(c, ws::kProtocolError);
        break;
    }
  }
  return used;
}

// The sender is the connection's user, whatever the frame says.
void EventLoop::on_message(Connection& c, std::string_view payload) {
  std::string_view raw_text;
  if (!find_text(payload, raw_text)) {
    append_error_frame(c.out, "invalid_json",
                       "a message frame must be a JSON object with a string \\\"text\\\"");
    if (check_output_bound(c)) mark_dirty(c);
    return;
  }
  Chat& chat = *c.chat;
  const std::uint64_t seq = ++chat.next_seq;
  char id[24];
  ids_.next(now_ms_, id);
  const std::string& sender = chat.users[c.side];
  if (log_ == nullptr) {
    scratch_.clear();
    append_message_frame(scratch_, sender, raw_text, std::string_view(id, sizeof id), seq,
                         ts_.text());
    deliver(chat, c.side, scratch_);
    return;
  }
  Pending& pending = batch_.emplace_back();
  pending.chat = &chat;
  pending.sender = &c;
  pending.side = c.side;
  pending.seq = seq;
  std::memcpy(pending.id, id, sizeof id);
  pending.frame_at = batch_frames_.size();
  pending.text_at = append_message_frame(batch_frames_, sender, raw_text,
                                         std::string_view(id, sizeof id), seq, ts_.text());
  pending.frame_size = batch_frames_.size() - pending.frame_at;
  pending.text_size = raw_text.size();
  if (!chat.in_batch) {
    chat.in_batch = true;
    batch_chats_.push_back(&chat);
  }
}

// To every open connection of the chat's other user.
void EventLoop::deliver(Chat& chat, int sender_side, std::string_view frame) {
  std::vector<Connection*>& list = chat.connections;
  for (std::size_t i = 0; i < list.size();) {
    Connection& recipient = *list[i];
    if (recipient.side == sender_side || recipient.state != Connection::State::open) {
      ++i;
      continue;
    }
    recipient.out.append(frame);
    if (!check_output_bound(recipient)) continue;  // removed: list[i] is another one now
    mark_dirty(recipient);
    ++i;
  }
}

// ---------------------------------------------------------------------------
// Persist mode: one transaction per pass, then delivery
// ---------------------------------------------------------------------------

// The text is stored unescaped (decoded from JSON), as chatd stores it; the
// raw text needs no decoding when it has no backslash (the load generator's).
void EventLoop::commit_batch() {
  if (batch_.empty()) return;
  bool ok = log_->begin();
  for (std::size_t i = 0; ok && i < batch_chats_.size(); ++i) {
    Chat& chat = *batch_chats_[i];
    if (chat.db_id != 0) continue;
    chat.db_id = log_->insert_chat(chat.key, chat.users[0], chat.users[1], now_ms_);
    chat.inserted_in_batch = true;
    ok = chat.db_id != 0;
  }
  for (std::size_t i = 0; ok && i < batch_.size(); ++i) {
    const Pending& pending = batch_[i];
    std::string_view text(batch_frames_.data() + pending.text_at, pending.text_size);
    if (text.find('\\') != std::string_view::npos) {
      unescape_json(text, scratch_);
      text = scratch_;
    }
    ok = log_->insert_message(pending.chat->db_id, pending.seq,
                              std::string_view(pending.id, sizeof pending.id),
                              pending.chat->users[pending.side], text, now_ms_);
  }
  for (std::size_t i = 0; ok && i < batch_chats_.size(); ++i) {
    ok = log_->update_chat(batch_chats_[i]->db_id, batch_chats_[i]->next_seq, now_ms_);
  }
  if (ok) ok = log_->commit();
  if (!ok) {
    std::fprintf(stderr, "chatd_ceiling: a batch of %zu messages failed: %s\n", batch_.size(),
                 log_->error());
    log_->rollback();
  }
  for (Chat* chat : batch_chats_) {
    if (ok) {
      chat->committed_seq = chat->next_seq;
    } else {
      chat->next_seq = chat->committed_seq;
      if (chat->inserted_in_batch) chat->db_id = 0;
    }
    chat->in_batch = false;
    chat->inserted_in_batch = false;
  }
  // Persist, then deliver.
  for (const Pending& pending : batch_) {
    if (ok) {
      deliver(*pending.chat, pending.side,
              std::string_view(batch_frames_.data() + pending.frame_at, pending.frame_size));
    } else if (!pending.sender->dead && pending.sender->state == Connection::State::open) {
      append_error_frame(pending.sender->out, "unavailable", "the message could not be stored");
      if (check_output_bound(*pending.sender)) mark_dirty(*pending.sender);
    }
  }
  batch_.clear();
  batch_chats_.clear();
  batch_frames_.clear();
  release_if_large(batch_frames_);
}

// ---------------------------------------------------------------------------
// Output and closing
// ---------------------------------------------------------------------------

void EventLoop::close_with(Connection& c, std::uint16_t code) {
  ws::append_close(c.out, code);
  c.state = Connection::State::closing;
  mark_dirty(c);
}

// A connection waiting for EPOLLOUT is written when it comes, not before.
void EventLoop::mark_dirty(Connection& c) {
  if (c.dirty || c.want_write) return;
  c.dirty = true;
  dirty_.push_back(&c);
}

bool EventLoop::check_output_bound(Connection& c) {
  if (c.out.size() - c.out_start <= kMaxPendingOutput) return true;
  kill(c);
  return false;
}

void EventLoop::flush_all() {
  for (Connection* c : dirty_) {
    c->dirty = false;
    if (!c->dead) flush(*c);
  }
  dirty_.clear();
}

void EventLoop::flush(Connection& c) {
  const std::size_t pending = c.out.size() - c.out_start;
  if (pending > 0) {
    ssize_t written = ::send(c.fd, c.out.data() + c.out_start, pending, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        kill(c);
        return;
      }
      written = 0;
    }
    c.out_start += static_cast<std::size_t>(written);
    if (c.out_start < c.out.size()) {
      if (!c.want_write) {
        c.want_write = true;
        set_events(c, EPOLLIN | EPOLLOUT);
      }
      if (c.out_start >= c.out.size() / 2) {
        c.out.erase(0, c.out_start);
        c.out_start = 0;
      }
      return;
    }
  }
  c.out.clear();
  c.out_start = 0;
  release_if_large(c.out);
  if (c.want_write) {
    c.want_write = false;
    set_events(c, EPOLLIN);
  }
  if (c.state == Connection::State::closing) {
    ::shutdown(c.fd, SHUT_WR);
    c.state = Connection::State::lingering;
    c.linger_until_ms = now_ms_ + kLingerMs;
    lingering_.push_back(&c);
  }
}

void EventLoop::set_events(Connection& c, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.ptr = &c;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &event);
}

// Closed now; the object goes at the end of the pass, so pointers to it in
// this pass's lists and epoll events stay valid (they check `dead`).
void EventLoop::kill(Connection& c) {
  if (c.dead) return;
  c.dead = true;
  ::close(c.fd);
  if (c.chat != nullptr) {
    auto& list = c.chat->connections;
    const auto at = std::find(list.begin(), list.end(), &c);
    if (at != list.end()) {
      *at = list.back();
      list.pop_back();
    }
  }
  const auto found = connections_.find(&c);
  graveyard_.push_back(std::move(found->second));
  connections_.erase(found);
  if (accept_paused_) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = &listen_tag;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &event) == 0) accept_paused_ = false;
  }
}

void EventLoop::expire_lingering() {
  std::erase_if(lingering_, [this](Connection* c) {
    if (c->dead) return true;
    if (now_ms_ < c->linger_until_ms) return false;
    kill(*c);
    return true;
  });
}

}  // namespace chatd::ceiling
