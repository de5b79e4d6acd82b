#pragma once

#include <optional>
#include <string>

namespace chatd::loadgen {

/// Every flag of chatd_loadgen (bench/README.md explains each).
struct Options {
  // Target
  std::string host = "127.0.0.1";
  unsigned port = 5010;
  unsigned peer_port = 0;         ///< second connection of each chat; 0 = --port
  unsigned source_addresses = 8;  ///< client sockets bind to 127.0.0.1 .. 127.0.0.K

  // Messaging run
  unsigned chats = 100;
  std::string prefix;      ///< run id; empty = generated
  unsigned size = 100;     ///< message text bytes
  double rate = 0;         ///< total messages/s; 0 = as fast as the window allows
  unsigned inflight = 32;  ///< rate 0: unacknowledged messages per sender
  double duration = 10;    ///< seconds measured
  double warmup = 2;       ///< seconds sent but not measured
  double drain = 5;        ///< longest wait for messages in flight at the end
  bool one_way = false;    ///< only the first connection of each chat sends

  // Connection storm
  unsigned storm = 0;  ///< > 0: open this many connections instead
  unsigned concurrency = 256;

  // Idle connections (memory per connection)
  unsigned idle = 0;        ///< > 0: open this many connections and hold them idle instead
  unsigned steps = 2;       ///< open them in this many equal steps, chatd's RSS after each
  double hold = 5;          ///< seconds held idle after the last step
  double settle = 2;        ///< seconds of quiet before each RSS sample
  unsigned server_pid = 0;  ///< chatd's pid; 0 = the process listening on --port

  // Protocol: chatd's v1 ("chatd", read as "v1"), v2 (--idle only), or
  // Centrifugo's (messaging and --idle; centrifugo.h).
  std::string protocol = "chatd";
  std::string centrifugo_secret;  ///< HMAC key of the connection tokens
  bool centrifugo() const { return protocol == "centrifugo"; }

  // Big history
  unsigned big_history = 0;  ///< > 0: fill one chat with this many messages, time connects
  unsigned connects = 200;   ///< connects timed per protocol
  unsigned page_size = 500;  ///< `limit` of each v2 history request
  unsigned page_runs = 5;    ///< times the whole history is paged through
  std::string fill_protocol = "v2";

  // Both
  unsigned threads = 1;
  double connect_timeout = 10;  ///< seconds for TCP connect + WebSocket handshake
  double setup_timeout = 120;   ///< seconds for all connections to open and sync

  // Output
  std::string json_path;
  std::string scenario;  ///< empty = derived from the mode
  std::string system = "chatd";
};

/// Parses argv. Returns nothing when the program should exit with
/// `exit_code` (0 after --help, 2 on a bad flag; the message is printed).
std::optional<Options> parse_options(int argc, char** argv, int& exit_code);

}  // namespace chatd::loadgen
