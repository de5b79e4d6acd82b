"""A real Redis for the scale-out tests (test_scaleout.py): Debian's `redis-server`.

`RedisServer` runs one redis-server on a loopback port of its own, with nothing
persisted (`--save "" --appendonly no`) and its working directory in the test's
temporary directory. Tests stop it (SIGTERM), kill it (SIGKILL) and start it again on
the same port to play an outage; `start()` returns once the server answers PING.
A server can also be made without starting it, on a port nothing listens on yet, so a
chatd can be pointed at a Redis that is not there and see it appear later.

* The binary: `REDIS_SERVER_BIN`, else `redis-server` on PATH, else /usr/bin/redis-server.
  Without one the tests fail with a message saying how to install it; they are never
  skipped silently.
* `command(*args)` sends one command over a raw socket (RESP) and returns the reply,
  parsed; nothing else is needed to talk to it (no redis-py).

Fixtures: `redis_servers` (a factory: `redis_servers(start=True, port=None)`), `redis`
(one started server). Every server a test made is killed at teardown, and its log is
attached to a failing test's report (conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ferretdb import CapturedOutput, free_port

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> Path | None:
    if os.environ.get("REDIS_SERVER_BIN"):
        return Path(os.environ["REDIS_SERVER_BIN"])
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    default = Path("/usr/bin/redis-server")
    return default if default.is_file() else None


class RedisError(Exception):
    """An error reply (`-ERR ...`) from the server."""


# ---------------------------------------------------------------------- RESP

def encode_command(*args: str | bytes | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self._buffer += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def exactly(self, count: int) -> bytes:
        while len(self._buffer) < count + 2:
            self._fill()
        data, self._buffer = self._buffer[:count], self._buffer[count + 2:]
        return data

    def reply(self) -> Any:
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else self.exactly(length)
        if kind == b"*":
            length = int(rest)
            return None if length < 0 else [self.reply() for _ in range(length)]
        raise ConnectionError(f"not a RESP reply: {line[:80]!r}")


def redis_command(port: int, *args: str | bytes | int, timeout: float = 2.0) -> Any:
    """One command to the Redis on 127.0.0.1:`port`; the parsed reply (RedisError for an
    error reply, OSError/ConnectionError when nothing answers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(encode_command(*args))
        return _Reader(sock).reply()


def answers_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        return redis_command(port, "PING", timeout=timeout) == "PONG"
    except (OSError, ConnectionError, RedisError, ValueError):
        return False


# ---------------------------------------------------------------------- the server

class RedisServer:
    """One redis-server process on a fixed loopback port (restartable on that port)."""

    def __init__(self, binary: Path, directory: Path, port: int | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.label = f"redis:{self.port}"
        self.starts = 0
        self._process: subprocess.Popen | None = None
        self._output = CapturedOutput()
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> "RedisServer":
        """Starts redis-server on `port` and returns once it answers PING."""
        assert not self.running, f"{self.label} is already running"
        command = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", "",  # stdout, read below
            "--loglevel", "notice",
        ]
        self.starts += 1
        self._output.note(f"--- start #{self.starts}: {' '.join(command)}")
        self._process = subprocess.Popen(command, cwd=self.directory, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._output.follow(self._process, name=f"{self.label}-output")
        deadline = time.monotonic() + timeout
        while not answers_ping(self.port):
            if self._process.poll() is not None:
                raise AssertionError(f"{self.label} exited with {self._process.returncode} "
                                     f"at start:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label} did not answer PING within {timeout}s:\n"
                                     f"{self.log_text()}")
            time.sleep(0.02)
        return self

    def stop(self) -> int | None:
        """SIGTERM, as an operator's restart would; the exit code."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int | None:
        """SIGKILL: Redis vanishes mid-run, without closing its connections cleanly."""
        return self._end(signal.SIGKILL)

    def restart(self) -> "RedisServer":
        """Stops it if running (SIGTERM) and starts it again on the same port."""
        self.stop()
        return self.start()

    def _end(self, how: signal.Signals) -> int | None:
        if not self.running:
            return None if self._process is None else self._process.returncode
        assert self._process is not None
        self._process.send_signal(how)
        try:
            code = self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._output.note(f"--- ended by {how.name}: exit {code}")
        return code

    def command(self, *args: str | bytes | int, timeout: float = 2.0) -> Any:
        return redis_command(self.port, *args, timeout=timeout)

    def ping(self) -> bool:
        return answers_ping(self.port)

    def clients(self) -> list[dict[str, str]]:
        """CLIENT LIST, one dict per connection (this query's own one left out)."""
        listing = self.command("CLIENT", "LIST").decode()
        clients = []
        for line in listing.splitlines():
            fields = dict(item.split("=", 1) for item in line.split(" ") if "=" in item)
            if fields.get("cmd") != "client|list":
                clients.append(fields)
        return clients

    def log_text(self) -> str:
        return self._output.text()

    def cleanup(self) -> None:
        self.kill()


def _require_binary() -> Path:
    binary = redis_server_binary()
    if binary is None or not binary.is_file():
        pytest.fail("redis-server not found for the scale-out tests. Install Debian's "
                    "`redis-server` package (`scripts/install-deps --test`), or point "
                    "REDIS_SERVER_BIN at a redis-server binary.", pytrace=False)
    return binary


@pytest.fixture
def redis_servers(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory: `redis_servers(start=True, port=None)` makes a RedisServer (on a free
    loopback port unless `port` is given), started unless `start=False`. All are killed
    at teardown."""
    binary = _require_binary()
    made: list[RedisServer] = []
    request.node._redis_servers = made

    def make(start: bool = True, port: int | None = None) -> RedisServer:
        server = RedisServer(binary, tmp_path / f"redis{len(made) + 1}", port)
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.cleanup()


@pytest.fixture
def redis(redis_servers):
    """One running redis-server: `.url`, `.port`, `.kill()`, `.stop()`, `.start()`."""
    return redis_servers()
