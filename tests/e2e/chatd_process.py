"""Starting and stopping the real chatd binary for the e2e tests.

A ChatdProcess runs chatd on 127.0.0.1 with port 0, in its own temporary working
directory (so no `.env` is picked up) and with an environment stripped of every chatd
setting. A background thread keeps reading its merged stdout/stderr, so the pipe never
fills, and notices the "listening on http://127.0.0.1:PORT" line.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / "build" / "chatd"
STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 10.0

_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")

# Environment variables chatd reads; none may leak in from the developer's shell.
_CHATD_SETTINGS = {
    "PORT", "HOST", "MONGO_URI", "SQLITE_PATH", "USER_SEARCH_URL", "USER_SEARCH_TIMEOUT_MS",
    "SECRET_KEY", "TOKEN_LEEWAY_SECONDS", "HISTORY_LIMIT", "MAX_MESSAGE_BYTES", "REDIS_URL",
    "ALLOWED_ORIGINS", "LOG_LEVEL", "LOG_FORMAT", "THREADS", "SHUTDOWN_TIMEOUT_MS",
    "REDIS_GAP_MS", "PRESENCE_TTL_SECONDS",
}


# The store of every chatd the `chatd` factory starts (conftest.py): SQLite files, or
# databases on one session-wide MongoDB-compatible server.
STORES = ("sqlite", "mongodb")
E2E_STORE = os.environ.get("CHATD_E2E_STORE", "") or "sqlite"


def sqlite_only(reason: str):
    """Decorator: skips the test in the CHATD_E2E_STORE=mongodb run, saying why."""
    import pytest
    return pytest.mark.skipif(E2E_STORE == "mongodb", reason=f"SQLite-specific: {reason}")


def chatd_binary() -> Path:
    return Path(os.environ.get("CHATD_BIN", str(DEFAULT_BINARY)))


@functools.lru_cache(maxsize=None)
def _settings_named_by(binary: Path) -> frozenset[str]:
    """The environment variables `chatd --help` lists as "(Env:NAME)"."""
    try:
        help_text = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                                   timeout=10, env={"PATH": os.environ.get("PATH", "")}).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(re.findall(r"\(Env:([A-Za-z0-9_]+)\)", help_text))


def clean_environment(binary: Path) -> dict[str, str]:
    """os.environ without any chatd setting, whether listed here or by `chatd --help`."""
    drop = _CHATD_SETTINGS | _settings_named_by(binary)
    return {
        key: value
        for key, value in os.environ.items()
        if key not in drop and not key.startswith("CHATD_")
    }


def quote_segment(name: str) -> str:
    """Percent-encodes one path segment (UTF-8), leaving nothing unescaped but
    unreserved characters."""
    return urllib.parse.quote(name, safe="")


class ChatdProcess:
    def __init__(self, *, binary: Path, workdir: Path, sqlite_path: Path,
                 args: list[str], env: dict[str, str], label: str,
                 mongo_uri: str | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.sqlite_path = sqlite_path
        self.args = args
        self.label = label
        self.port: int | None = None
        self.returncode: int | None = None
        self.stopped = False  # set once stop()/wait_exit() collected the exit
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._listening = threading.Event()
        self._output_closed = threading.Event()

        # `sqlite_path` names the data either way: with `mongo_uri` (CHATD_E2E_STORE=mongodb)
        # the factory derived the database from it, and chatd gets --mongo-uri instead.
        self.mongo_uri = mongo_uri
        store = (["--mongo-uri", mongo_uri] if mongo_uri is not None
                 else ["--sqlite-path", str(sqlite_path)])
        command = [str(binary), "--host", "127.0.0.1", "--port", "0", *store, *args]
        self.command = command
        self._process = subprocess.Popen(
            command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read_output, name=f"{label}-output",
                                        daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ output

    def _read_output(self) -> None:
        assert self._process.stdout is not None
        for raw in iter(self._process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._lines_lock:
                self._lines.append(line)
            if not self._listening.is_set():
                match = _LISTENING.search(line)
                if match:
                    self.port = int(match.group(1))
                    self._listening.set()
        self._output_closed.set()

    def log_text(self, last: int | None = None) -> str:
        with self._lines_lock:
            lines = self._lines if last is None else self._lines[-last:]
            return "\n".join(lines)

    def log_contains(self, needle: str) -> bool:
        with self._lines_lock:
            return any(needle in line for line in self._lines)

    # ------------------------------------------------------------------ lifecycle

    def wait_listening(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self._process.poll() is not None:
                self._output_closed.wait(2)
                raise AssertionError(
                    f"{self.label} exited with code {self._process.returncode} before "
                    f"listening.\ncommand: {self.command}\n--- log ---\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.label} did not log 'listening on http://127.0.0.1:PORT' within "
                    f"{timeout}s.\ncommand: {self.command}\n--- log ---\n{self.log_text()}")

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._process.pid

    def send_sigterm(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int | None:
        """Exit code, or None (after killing it) when it did not exit in time."""
        self.stopped = True
        try:
            self.returncode = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            self.returncode = None
        self._output_closed.wait(2)
        return self.returncode

    def uses_asan(self) -> bool:
        """Whether this chatd is a sanitizer build, AddressSanitizer or ThreadSanitizer (its
        RSS is then the sanitizer's: quarantine, shadow memory)."""
        with open(f"/proc/{self.pid}/maps", encoding="ascii", errors="replace") as maps:
            mapped = maps.read()
            return "libasan" in mapped or "libtsan" in mapped

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int | None:
        """SIGTERM, then the exit code (None if it had to be killed)."""
        if self._process.poll() is not None:
            self.stopped = True
            self.returncode = self._process.returncode
            self._output_closed.wait(2)
            return self.returncode
        self.send_sigterm()
        return self.wait_exit(timeout)

    def stop_and_check(self) -> None:
        code = self.stop()
        assert code == 0, (
            f"{self.label}: expected exit code 0 after SIGTERM, got "
            f"{'no exit within %ss (killed)' % SHUTDOWN_TIMEOUT_S if code is None else code}"
            f"\n--- log (last 60 lines) ---\n{self.log_text(60)}")

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    # ------------------------------------------------------------------ addresses

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, user1: str, user2: str) -> str:
        return self.ws_raw(f"/ws/{quote_segment(user1)}/{quote_segment(user2)}")

    def ws_raw(self, path: str) -> str:
        """URL for an already-encoded path (used to send malformed paths verbatim)."""
        return f"ws://127.0.0.1:{self.port}{path}"
