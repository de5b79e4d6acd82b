"""A MongoDB-compatible server for the e2e tests: FerretDB 1.24 with its SQLite backend.

The `ferretdb` fixture starts a FerretDB of its own for each test, on a free loopback
port with its data in the test's temporary directory, and stops it at teardown. Tests
can stop, kill and start it again (same port, same data) to play an outage.

* The binary: `FERRETDB_BIN`, else `$(go env GOPATH)/bin/ferretdb` (where
  `scripts/install-deps --test` builds it), else `ferretdb` on PATH.
* Telemetry is disabled (`--telemetry=disable`, `DO_NOT_TRACK=1`); FerretDB listens on
  127.0.0.1 only and its debug handler on a free loopback port.
* `MONGO_TEST_URI=mongodb://host:port` runs the tests against that server instead (a
  real mongod where one exists); each test then uses a database of its own, dropped at
  teardown, and the tests that must stop the server are skipped, saying why.

Without either, the MongoDB tests fail with a message saying how to provide one; they
are never skipped silently.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 20.0


def ferretdb_binary() -> Path | None:
    if os.environ.get("FERRETDB_BIN"):
        return Path(os.environ["FERRETDB_BIN"])
    go = shutil.which("go") or ("/usr/local/go/bin/go"
                                if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go:
        try:
            gopath = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True,
                                    timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            gopath = ""
        if gopath and (Path(gopath) / "bin" / "ferretdb").is_file():
            return Path(gopath) / "bin" / "ferretdb"
    default = Path.home() / "go" / "bin" / "ferretdb"  # Go's default GOPATH
    if default.is_file():
        return default
    found = shutil.which("ferretdb")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class CapturedOutput:
    """A server process's stdout and stderr, read line by line on a thread of its own,
    for the log a failing test prints."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def note(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def follow(self, process: subprocess.Popen, name: str | None = None) -> None:
        threading.Thread(target=self._read, args=(process,), daemon=True, name=name).start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            self.note(raw.decode("utf-8", errors="replace").rstrip())

    def text(self) -> str:
        with self._lock:
            return "\n".join(self._lines)


class FerretDB:
    """One FerretDB process (restartable on the same port and data directory)."""

    can_stop = True

    def __init__(self, binary: Path, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.label = f"ferretdb:{self.port}"
        self._process: subprocess.Popen | None = None
        self._output = CapturedOutput()
        (directory / "data").mkdir(parents=True, exist_ok=True)

    def uri(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "FerretDB":
        assert not self.running, "FerretDB is already running"
        command = [
            str(self.binary), "--handler=sqlite",
            f"--sqlite-url=file:{self.directory / 'data'}/",
            f"--state-dir={self.directory}",
            f"--listen-addr=127.0.0.1:{self.port}",
            "--debug-addr=127.0.0.1:0",
            "--telemetry=disable",
            "--log-level=warn",
        ]
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("FERRETDB_")}
        environment["DO_NOT_TRACK"] = "1"
        self._process = subprocess.Popen(command, cwd=self.directory, env=environment,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
        self._output.follow(self._process)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _accepts_connections(self.port):
            if self._process.poll() is not None:
                raise AssertionError(f"{self.label} exited with {self._process.returncode} at "
                                     f"start:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label} did not listen within {STARTUP_TIMEOUT_S}s:"
                                     f"\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM, as an operator's restart would."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation."""
        self._end(signal.SIGKILL)

    def _end(self, how: signal.Signals) -> None:
        if not self.running:
            return
        assert self._process is not None
        self._process.send_signal(how)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def log_text(self) -> str:
        return self._output.text()

    def cleanup(self) -> None:
        self.kill()


class ExternalMongo:
    """The server MONGO_TEST_URI names; tests use databases of their own on it."""

    can_stop = False

    def __init__(self, uri: str) -> None:
        parts = urllib.parse.urlsplit(uri)
        self._base = parts._replace(path="")
        self.label = f"MONGO_TEST_URI {parts.hostname}:{parts.port}"
        self._databases: set[str] = set()

    def uri(self, database: str) -> str:
        self._databases.add(database)
        return urllib.parse.urlunsplit(self._base._replace(path="/" + database))

    def _cannot(self) -> None:
        pytest.skip("this test stops and restarts the MongoDB server; MONGO_TEST_URI names "
                    "a server the tests do not own (run without it to use FerretDB)")

    stop = kill = start = _cannot

    def log_text(self) -> str:
        return ""

    def cleanup(self) -> None:
        import pymongo
        client = pymongo.MongoClient(urllib.parse.urlunsplit(self._base),
                                     serverSelectionTimeoutMS=3000)
        try:
            for database in self._databases:
                client.drop_database(database)
        finally:
            client.close()


def unique_database(prefix: str = "chatd_e2e") -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def start_mongo_server(directory: Path) -> FerretDB | ExternalMongo:
    """The server MONGO_TEST_URI names, else a FerretDB started with its data in
    `directory`; fails (never skips) when there is neither."""
    external = os.environ.get("MONGO_TEST_URI")
    if external:
        return ExternalMongo(external)
    binary = ferretdb_binary()
    if binary is None or not binary.is_file():
        pytest.fail("FerretDB not found for the MongoDB tests. Install it with "
                    "`scripts/install-deps --test` (needs Go >= 1.24), point FERRETDB_BIN "
                    "at a ferretdb binary, or set MONGO_TEST_URI=mongodb://host:port to "
                    "use a running MongoDB.", pytrace=False)
    return FerretDB(binary, directory).start()


@pytest.fixture
def ferretdb(request: pytest.FixtureRequest, tmp_path: Path):
    """A running MongoDB-compatible server: `.uri(database)`, `.stop()`, `.kill()`,
    `.start()`, `.port`."""
    server = start_mongo_server(tmp_path / "ferretdb")
    request.node._ferretdb = server
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def session_mongo(tmp_path_factory: pytest.TempPathFactory):
    """One MongoDB-compatible server for the whole session: the store of every chatd the
    `chatd` factory starts when CHATD_E2E_STORE=mongodb (each on a database of its own)."""
    server = start_mongo_server(tmp_path_factory.mktemp("session-ferretdb"))
    yield server
    server.cleanup()


# ---------------------------------------------------------------------- helpers

def mongo_client(server: FerretDB | ExternalMongo):
    """A pymongo client (Debian's python3-pymongo) on the server, for seeding and checks."""
    import pymongo
    return pymongo.MongoClient(server.uri(""), serverSelectionTimeoutMS=5000)


def readyz(chatd_server) -> int:
    """The HTTP status of chatd's /readyz."""
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", chatd_server.port, timeout=5)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_readyz(chatd_server, status: int, timeout: float = 20.0) -> None:
    """Polls /readyz until it answers `status` (chatd reconnects by itself, with backoff)."""
    deadline = time.monotonic() + timeout
    last = readyz(chatd_server)
    while last != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{chatd_server.label}: /readyz still {last} after {timeout}s, "
                                 f"expected {status}\n--- log ---\n{chatd_server.log_text(40)}")
        time.sleep(0.1)
        last = readyz(chatd_server)
