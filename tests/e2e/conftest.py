"""Fixtures for the chatd end-to-end suite.

* `chatd`: a factory that starts the real binary (any number of instances, with extra
  flags, optionally on the data file of an earlier instance) and stops each with SIGTERM
  at teardown, asserting exit code 0.
* `user_search`: the user-search stand-in (user_search_stub.py), started on port 0.
* `ferretdb`: a MongoDB-compatible server for the MONGO_URI tests (ferretdb.py).
* `redis`, `redis_servers`: real redis-servers for the scale-out tests (redis_server.py).
* `CHATD_E2E_STORE=sqlite|mongodb` (default sqlite) picks the store of every chatd the
  factory starts: `--sqlite-path` in the test's temporary directory, or `--mongo-uri` on
  one session-wide FerretDB (or MONGO_TEST_URI), with a database derived from that same
  SQLite path (so "the same data" means the same database). `E2E_STORE` says which.
* `async def` tests run on a fresh event loop under an overall timeout (pytest-asyncio is
  not available on the target system); connections they open are closed afterwards.

When a test fails, the log of every chatd it started and the stub's request log are
attached to the report and written to tests/e2e/artifacts/.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import re
import secrets
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import figures
from chat_client import close_all_clients
from chatd_process import E2E_STORE, STORES, ChatdProcess, chatd_binary, clean_environment
from ferretdb import ferretdb  # noqa: F401  (the `ferretdb` fixture: a MongoDB-compatible server)
from ferretdb import session_mongo  # noqa: F401  (the store under CHATD_E2E_STORE=mongodb)
from redis_server import redis, redis_servers  # noqa: F401  (redis-server for scale-out tests)
from user_search_stub import UserSearchStub
from webhook_receiver import webhook_receiver  # noqa: F401  (the receiver of chatd's webhooks)

DEFAULT_TEST_TIMEOUT_S = 30.0
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

MONGO_READY_TIMEOUT_S = 20.0
_SESSION_SALT = secrets.token_hex(4)  # fresh databases even on a reused MONGO_TEST_URI


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if figures.LINES:
        terminalreporter.section("figures")
        for line in figures.LINES:
            terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    if E2E_STORE not in STORES:
        raise pytest.UsageError(f"CHATD_E2E_STORE={E2E_STORE!r}: expected one of {STORES}")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # logs of an earlier run would mislead
    config.addinivalue_line(
        "markers", "e2e_timeout(seconds): overall time limit of one async e2e test")


# ---------------------------------------------------------------------- async tests

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    marker = pyfuncitem.get_closest_marker("e2e_timeout")
    timeout = marker.args[0] if marker else DEFAULT_TEST_TIMEOUT_S
    arguments = {name: pyfuncitem.funcargs[name]
                 for name in pyfuncitem._fixtureinfo.argnames}

    async def run() -> None:
        try:
            await asyncio.wait_for(function(**arguments), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"test did not finish within its {timeout}s limit")
        finally:
            await close_all_clients()

    asyncio.run(run())
    return True


# ---------------------------------------------------------------------- chatd

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if E2E_STORE != "mongodb":
        return
    # test_mongo*.py choose their store themselves (MONGO_URI on a FerretDB of their own,
    # or SQLite for the import): the mongodb run would repeat the default run's work.
    skip = pytest.mark.skip(reason="store-independent MongoDB test: run by the default "
                                   "(CHATD_E2E_STORE=sqlite) run")
    for item in items:
        if item.path.name.startswith("test_mongo"):
            item.add_marker(skip)


def mongo_database_for(sqlite_path: Path) -> str:
    """The MongoDB database standing in for a SQLite file: same path, same database."""
    digest = hashlib.sha256(f"{_SESSION_SALT}:{sqlite_path.resolve()}".encode()).hexdigest()
    return f"chatd_e2e_{digest[:16]}"


def _test_chose_store(args: tuple[str, ...], env: dict[str, str] | None,
                      dotenv: str | None) -> bool:
    """True when the test gives chatd its store itself (MONGO_URI, --mongo-uri, ...)."""
    flags = {arg.split("=", 1)[0] for arg in args}
    if flags & {"--mongo-uri", "--sqlite-path"}:
        return True
    if env and ("MONGO_URI" in env or "SQLITE_PATH" in env):
        return True
    return dotenv is not None and re.search(r"^\s*(MONGO_URI|SQLITE_PATH)\s*=", dotenv,
                                            re.MULTILINE) is not None


def wait_store_ready(server: ChatdProcess, timeout: float = MONGO_READY_TIMEOUT_S) -> None:
    """Polls /readyz until its "store" says ok (the MongoDB store connects in the
    background; sessions opened before that are closed with 1013)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.running:
            break
        try:
            with urllib.request.urlopen(f"{server.http_base}/readyz", timeout=2) as response:
                body = response.read()
        except urllib.error.HTTPError as error:  # 503 while not ready
            body = error.read()
        except OSError as error:
            last = str(error)
            time.sleep(0.05)
            continue
        try:
            last = json.loads(body).get("store", body)
        except ValueError:
            last = body
        if last == "ok":
            return
        time.sleep(0.05)
    raise AssertionError(f"{server.label}: the MongoDB store was not ready within {timeout}s "
                         f"(/readyz store: {last!r})\ncommand: {server.command}\n"
                         f"--- log ---\n{server.log_text(40)}")


class ChatdFactory:
    def __init__(self, tmp_path: Path, mongo: Any = None) -> None:
        self._tmp_path = tmp_path
        self._mongo = mongo  # the session's server when CHATD_E2E_STORE=mongodb
        self.instances: list[ChatdProcess] = []

    def __call__(self, *args: str, user_search: UserSearchStub | str | None = None,
                 sqlite_path: Path | None = None, env: dict[str, str] | None = None,
                 dotenv: str | None = None, wait: bool = True) -> ChatdProcess:
        """Starts chatd with `args` as extra flags. `sqlite_path` reuses an earlier
        instance's data; `user_search` is a stub or a URL; `env` adds environment
        variables; `dotenv` is written to `.env` in chatd's working directory."""
        binary = chatd_binary()
        if not binary.is_file():
            pytest.fail(
                f"chatd binary not found at {binary}. Build it with "
                "`cmake -S . -B build -G Ninja && ninja -C build chatd`, "
                "or point CHATD_BIN at it.", pytrace=False)
        index = len(self.instances) + 1
        workdir = self._tmp_path / f"chatd{index}-cwd"
        workdir.mkdir()
        if dotenv is not None:
            (workdir / ".env").write_text(dotenv, encoding="utf-8")
        if sqlite_path is None:
            sqlite_path = self._tmp_path / f"chatd{index}-data" / "chat.db"
            sqlite_path.parent.mkdir()
        flags = list(args)
        if user_search is not None:
            url = user_search if isinstance(user_search, str) else user_search.url
            flags += ["--user-search-url", url]
        environment = clean_environment(binary)
        environment.update(env or {})
        mongo_uri = None
        if self._mongo is not None and not _test_chose_store(args, env, dotenv):
            mongo_uri = self._mongo.uri(mongo_database_for(sqlite_path))
        try:
            server = ChatdProcess(binary=binary, workdir=workdir, sqlite_path=sqlite_path,
                                  args=flags, env=environment, label=f"chatd#{index}",
                                  mongo_uri=mongo_uri)
        except OSError as error:
            pytest.fail(f"cannot start {binary} (being rebuilt?): {error}", pytrace=False)
        self.instances.append(server)
        if wait:
            server.wait_listening()
            if mongo_uri is not None:
                wait_store_ready(server)
        return server

    def stop_all(self) -> list[str]:
        problems = []
        for server in self.instances:
            if server.stopped:
                continue  # the test stopped it and checked the outcome itself
            if not server.running:
                code = server.stop()
                problems.append(f"{server.label} exited on its own during the test "
                                f"(code {code})")
                continue
            code = server.stop()
            if code != 0:
                problems.append(f"{server.label}: SIGTERM -> expected exit code 0, got "
                                f"{'a hang (killed after timeout)' if code is None else code}")
        return problems


@pytest.fixture
def chatd(request: pytest.FixtureRequest, tmp_path: Path):
    mongo = request.getfixturevalue("session_mongo") if E2E_STORE == "mongodb" else None
    factory = ChatdFactory(tmp_path, mongo)
    request.node._chatd_factory = factory
    yield factory
    problems = factory.stop_all()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def user_search(request: pytest.FixtureRequest):
    stub = UserSearchStub().start()
    request.node._user_search_stub = stub
    yield stub
    stub.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A user-search URL where nothing listens (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/user/soap"


# ---------------------------------------------------------------------- failure logs

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    sections = _failure_logs(item)
    for title, text in sections:
        report.sections.append((f"{title} ({report.when})", _tail(text, 120)))
    if sections and not getattr(item, "_e2e_artifacts_written", False):
        item._e2e_artifacts_written = True
        ARTIFACTS.mkdir(exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)
        for title, text in sections:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", title)
            (ARTIFACTS / f"{safe}.{name}.log").write_text(text + "\n", encoding="utf-8")


def _failure_logs(item: pytest.Item) -> list[tuple[str, str]]:
    sections = []
    factory = getattr(item, "_chatd_factory", None)
    if factory is not None:
        for server in factory.instances:
            header = f"command: {' '.join(server.command)}\nport: {server.port}\n"
            sections.append((f"{server.label} log", header + server.log_text()))
    stub = getattr(item, "_user_search_stub", None)
    if stub is not None:
        sections.append(("user-search stub log", "\n".join(stub.log)))
    mongo = getattr(item, "_ferretdb", None)
    if mongo is not None:
        sections.append((f"{mongo.label} log", mongo.log_text()))
    for redis_server in getattr(item, "_redis_servers", []):
        sections.append((f"{redis_server.label} log", redis_server.log_text()))
    return sections


def _tail(text: str, lines: int) -> str:
    all_lines = text.splitlines()
    if len(all_lines) <= lines:
        return text
    return f"... ({len(all_lines) - lines} earlier lines in tests/e2e/artifacts/)\n" + \
        "\n".join(all_lines[-lines:])
