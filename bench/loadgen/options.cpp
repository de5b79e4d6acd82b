#include "loadgen/options.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

namespace chatd::loadgen {
namespace {

/// A run id unique enough that two runs against one database never share a
/// chat: 6 hex digits of the clock and the process id.
std::string generated_prefix() {
  const auto now = std::chrono::system_clock::now().time_since_epoch().count();
  const auto mixed =
      static_cast<unsigned long long>(now) ^ (static_cast<unsigned long long>(::getpid()) << 20);
  char out[16];
  std::snprintf(out, sizeof out, "lg%06llx", (mixed >> 8) & 0xFFFFFF);
  return out;
}

bool is_plain_name(const std::string& text) {
  for (const char c : text) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '_';
    if (!plain) return false;
  }
  return true;
}

}  // namespace

std::optional<Options> parse_options(int argc, char** argv, int& exit_code) {
  Options options;
  CLI::App app{"chatd_loadgen: measures a running chatd over loopback"};
  app.option_defaults()->always_capture_default();

  app.add_option("--host", options.host, "chatd's address (numeric IPv4 or IPv6)");
  app.add_option("--port", options.port, "chatd's port")->check(CLI::Range(1, 65535));
  app.add_option("--peer-port", options.peer_port,
                 "chat load: the second connection of each chat connects here (another chatd "
                 "instance); default --port")
      ->check(CLI::Range(1, 65535));
  app.add_option("--source-addresses", options.source_addresses,
                 "bind client sockets to 127.0.0.1 .. 127.0.0.K (IPv4 loopback targets only)")
      ->check(CLI::Range(1, 250));

  app.add_option("--chats", options.chats, "chats, two connections each")
      ->check(CLI::Range(1, 100000));
  app.add_option(
      "--prefix", options.prefix,
      "run id prefixed to every username (letters, digits, - and _); default: generated");
  app.add_option("--size", options.size, "bytes of message text (raised to the header's size)")
      ->check(CLI::Range(1, 16384));
  app.add_option("--rate", options.rate,
                 "total messages/s over all senders, on a fixed schedule; 0 = as fast as "
                 "--inflight allows")
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--inflight", options.inflight, "--rate 0: unacknowledged messages per sender")
      ->check(CLI::Range(1, 100000));
  app.add_option("--duration", options.duration, "seconds measured")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--warmup", options.warmup, "seconds of load before the measurement")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--drain", options.drain, "longest wait in seconds for messages still in flight")
      ->check(CLI::Range(0.0, 600.0));
  app.add_flag("--one-way", options.one_way, "only the first connection of each chat sends");

  app.add_option("--storm", options.storm,
                 "connection storm: open this many fresh connections (in pairs) instead")
      ->check(CLI::Range(0, 1000000));
  app.add_option("--concurrency", options.concurrency,
                 "connections being opened at once (storm and set-up)")
      ->check(CLI::Range(1, 100000));

  app.add_option("--idle", options.idle,
                 "idle connections: open this many (in pairs), hold them, report chatd's RSS")
      ->check(CLI::Range(0, 10000000));
  app.add_option("--steps", options.steps, "--idle: open in this many steps, RSS after each")
      ->check(CLI::Range(1, 100));
  app.add_option("--hold", options.hold, "--idle: seconds to hold the connections idle")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--settle", options.settle, "--idle: seconds of quiet before each RSS sample")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--server-pid", options.server_pid,
                 "--idle: chatd's pid (default: the process listening on --port)");
  app.add_option("--protocol", options.protocol,
                 "chatd (= v1), v2 (--idle only: ready at the history frame; v1 is ready when "
                 "chatd answers a ping) or centrifugo (Centrifugo's JSON protocol, messaging and "
                 "--idle)")
      ->check(CLI::IsMember({"chatd", "v1", "v2", "centrifugo"}));
  app.add_option("--centrifugo-secret", options.centrifugo_secret,
                 "--protocol centrifugo: the HMAC secret of Centrifugo's connection tokens "
                 "(client.token.hmac_secret_key)");

  app.add_option("--big-history", options.big_history,
                 "big history: fill one chat with this many messages, then time connects and "
                 "paging")
      ->check(CLI::Range(0, 10000000));
  app.add_option("--connects", options.connects, "--big-history: connects timed per protocol")
      ->check(CLI::Range(0, 1000000));
  app.add_option("--page-size", options.page_size,
                 "--big-history: limit of each v2 history request (chatd allows 500)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--page-runs", options.page_runs,
                 "--big-history: times the whole history is paged through")
      ->check(CLI::Range(0, 10000));
  app.add_option("--fill-protocol", options.fill_protocol,
                 "--big-history: fill with v2 sends (acknowledged) or v1 frames (counted at the "
                 "peer's connection)")
      ->check(CLI::IsMember({"v1", "v2"}));

  app.add_option("--threads", options.threads, "load generator threads")->check(CLI::Range(1, 64));
  app.add_option("--connect-timeout", options.connect_timeout,
                 "seconds for one TCP connect plus WebSocket handshake")
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--setup-timeout", options.setup_timeout,
                 "seconds for every connection to open (and, messaging, to sync)")
      ->check(CLI::Range(1.0, 3600.0));

  app.add_option("--json", options.json_path, "write the results as JSON rows to this file");
  app.add_option("--scenario", options.scenario, "scenario name in the JSON rows (default: mode)");
  app.add_option("--system", options.system, "system name in the JSON rows");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    exit_code = app.exit(error);
    return std::nullopt;
  }
  if (options.prefix.empty()) options.prefix = generated_prefix();
  // Names are "<prefix>u<i>a": plain characters keep frames free of JSON
  // escapes and paths free of percent-encoding, and 64 bytes is chatd's limit.
  if (!is_plain_name(options.prefix) || options.prefix.size() > 40) {
    std::cerr << "--prefix: use at most 40 letters, digits, '-' or '_'\n";
    exit_code = 2;
    return std::nullopt;
  }
  if ((options.storm > 0) + (options.idle > 0) + (options.big_history > 0) > 1) {
    std::cerr << "--storm, --idle and --big-history are separate modes: give one\n";
    exit_code = 2;
    return std::nullopt;
  }
  if (options.protocol == "chatd") options.protocol = "v1";
  if (options.centrifugo()) {
    if (options.centrifugo_secret.empty()) {
      std::cerr << "--protocol centrifugo: give --centrifugo-secret\n";
      exit_code = 2;
      return std::nullopt;
    }
    if (options.storm > 0 || options.big_history > 0) {
      std::cerr << "--protocol centrifugo: messaging runs and --idle only\n";
      exit_code = 2;
      return std::nullopt;
    }
    if (app.get_option("--system")->count() == 0) options.system = "centrifugo";
  }
  if (options.storm % 2 != 0) ++options.storm;  // connections come in pairs
  exit_code = 0;
  return options;
}

}  // namespace chatd::loadgen
