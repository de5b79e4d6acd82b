"""A TCP proxy for the MongoDB wire protocol, between chatd and the test's FerretDB, that
lets a test see, hold and slow down the commands chatd sends (test_mongo_seq.py).

`MongoProxy(upstream_host, upstream_port).start()` listens on 127.0.0.1, on a free port
(`.uri(database, **options)` is the MONGO_URI to give chatd), and opens one upstream
connection per client connection. It reads whole messages (the 16-byte header:
messageLength, requestID, responseTo, opCode) and forwards their bytes unchanged; what
it parses is only for counting and matching:

* OP_MSG (2013): flagBits, then sections: kind 0, the command document (its first key is
  the command's name, e.g. `insert`, whose value is the collection); kind 1, a document
  sequence (identifier, e.g. "documents", then BSON documents: counted). flagBits bit 0
  means a CRC-32C follows the sections: it is forwarded as it is, not checked.
* OP_QUERY (2004), the legacy handshake: its query document is parsed the same way
  (`*.$cmd` is a command).
* OP_COMPRESSED (2012) and anything else: forwarded untouched, counted by op code
  (chatd asks for no compression).

A `Command` says what a request was: name, collection, database, documents carried,
the proxy's number of the connection. Controls, each thread-safe (the proxy runs on
threads of its own; tests call these from any thread, e.g. through asyncio.to_thread):

* `counts()`: how many requests were seen by (name, collection), e.g.
  {("insert", "messages"): 3, ("update", "chats"): 2, ("find", "chats"): 1, ("ping",
  None): 9}; `commands()` lists them in arrival order.
* `delay_replies(seconds, match, count=None)`: the replies to the requests `match`es
  (decided when the request arrives) are held `seconds` after the server sent them, then
  forwarded; `count` limits the rule to that many requests. `wait_delayed(timeout, n)`
  returns the n-th reply so held, once the server has answered (for a write: it is
  done on the server) — `Delayed.command`, `.held_at` (time.monotonic()).
* `hold(match, count=None)`: requests `match`es are not forwarded at all (nor what their
  connection sends after them) until `release()`, which forwards them and ends the hold.
  `wait_held(timeout, n)` returns the n-th request held. A held request whose client
  disconnects (chatd killed) is dropped, never forwarded (`dropped()`).
* `stop()`: closes the listener and every connection; held requests are dropped and
  delayed replies let go.

`command(name, collection=None)` makes a `match` (a callable taking a Command). The
`mongo_proxy` fixture starts one in front of the test's `ferretdb` and stops it at
teardown. The proxy listens on 127.0.0.1 only.
"""

from __future__ import annotations

import collections
import dataclasses
import select
import socket
import struct
import threading
import time
import urllib.parse
from typing import Any, Callable

import pytest

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013
CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1

_HEADER = struct.Struct("<iiii")
_INT32 = struct.Struct("<i")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # well past MongoDB's 48 MB maxMessageSizeBytes
POLL_S = 0.02  # how often a held request looks whether its client is still there


@dataclasses.dataclass(frozen=True)
class Command:
    """One request as the proxy read it."""

    connection: int           # the proxy's number of the client connection, from 1
    request_id: int
    op_code: int
    name: str | None          # the command document's first key (None: not parsed)
    collection: str | None    # that key's value when it is a string (getMore: "collection")
    database: str | None      # "$db" (OP_MSG) or the namespace's database (OP_QUERY)
    documents: int            # documents in kind-1 sections and in a "documents" array
    more_to_come: bool        # OP_MSG flagBits bit 1: no reply will come
    arrived_at: float         # time.monotonic()

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.name, self.collection)

    def __str__(self) -> str:
        where = f" {self.collection}" if self.collection is not None else ""
        docs = f" ({self.documents} documents)" if self.documents else ""
        return f"#{self.connection} {self.name}{where}{docs}"


@dataclasses.dataclass(frozen=True)
class Delayed:
    """A reply held by a delay_replies rule: the server had answered `command`."""

    command: Command
    held_at: float            # time.monotonic() when the server's reply arrived
    seconds: float


def command(name: str, collection: str | None = None) -> Callable[[Command], bool]:
    """A `match` for requests of command `name` (on `collection` when given)."""
    def match(cmd: Command) -> bool:
        return cmd.name == name and (collection is None or cmd.collection == collection)
    match.__name__ = f"command({name!r}, {collection!r})"
    return match


def any_command(cmd: Command) -> bool:
    return True


# ---------------------------------------------------------------------- parsing

def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\x00", offset)
    return data[offset:end].decode("utf-8", errors="replace"), end + 1


def _first_element(document: bytes) -> tuple[str | None, Any]:
    """The first key of a BSON document, and its value when it is a string (else None)."""
    if len(document) < 6 or document[4] == 0:
        return None, None
    kind = document[4]
    key, offset = _cstring(document, 5)
    if kind == 0x02:  # UTF-8 string: int32 length (with its NUL), bytes, NUL
        (length,) = _INT32.unpack_from(document, offset)
        return key, document[offset + 4: offset + 4 + length - 1].decode("utf-8", "replace")
    return key, None


def _decode(document: bytes) -> dict[str, Any]:
    try:
        import bson  # pymongo's (Debian's python3-pymongo)
        return bson.decode(document)
    except Exception:  # noqa: BLE001 (a document the test's matcher need not see)
        return {}


def _count_sequence(data: bytes, offset: int, end: int) -> int:
    count = 0
    while offset + 4 <= end:
        (length,) = _INT32.unpack_from(data, offset)
        if length < 5:
            break
        offset += length
        count += 1
    return count


def parse_request(message: bytes, connection: int) -> Command:
    """What a whole client message (header included) is; never raises on odd input."""
    _, request_id, _, op_code = _HEADER.unpack_from(message, 0)
    name = collection = database = None
    documents = 0
    more_to_come = False
    body: dict[str, Any] = {}
    try:
        if op_code == OP_MSG:
            (flags,) = struct.unpack_from("<I", message, 16)
            more_to_come = bool(flags & MORE_TO_COME)
            end = len(message) - (4 if flags & CHECKSUM_PRESENT else 0)
            offset = 20
            while offset < end:
                kind = message[offset]
                offset += 1
                (length,) = _INT32.unpack_from(message, offset)
                if kind == 0:
                    document = message[offset: offset + length]
                    name, collection = _first_element(document)
                    body = _decode(document)
                elif kind == 1:
                    _, documents_at = _cstring(message, offset + 4)
                    documents += _count_sequence(message, documents_at, offset + length)
                else:
                    break  # kind 2 is internal to servers
                offset += length
        elif op_code == OP_QUERY:
            namespace, offset = _cstring(message, 20)
            offset += 8  # numberToSkip, numberToReturn
            (length,) = _INT32.unpack_from(message, offset)
            document = message[offset: offset + length]
            database = namespace.split(".", 1)[0]
            if namespace.endswith(".$cmd"):
                name, collection = _first_element(document)
                body = _decode(document)
            else:
                name, collection = "OP_QUERY", namespace.split(".", 1)[-1]
        else:
            name = {OP_COMPRESSED: "OP_COMPRESSED"}.get(op_code, f"op {op_code}")
    except (IndexError, ValueError, struct.error):
        name = name or f"op {op_code} (unparsed)"
    if body:
        database = body.get("$db", database)
        if name == "getMore" and isinstance(body.get("collection"), str):
            collection = body["collection"]
        if isinstance(body.get("documents"), list):
            documents += len(body["documents"])
    return Command(connection=connection, request_id=request_id, op_code=op_code, name=name,
                   collection=collection, database=database, documents=documents,
                   more_to_come=more_to_come, arrived_at=time.monotonic())


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    chunks = []
    while count:
        try:
            chunk = sock.recv(min(count, 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket) -> bytes | None:
    """One whole wire-protocol message, or None at EOF (or on a broken stream)."""
    header = _read_exactly(sock, 16)
    if header is None:
        return None
    (length,) = _INT32.unpack_from(header, 0)
    if length < 16 or length > MAX_MESSAGE_BYTES:
        return None
    rest = _read_exactly(sock, length - 16)
    return None if rest is None else header + rest


# ---------------------------------------------------------------------- the proxy

@dataclasses.dataclass
class _Rule:
    match: Callable[[Command], bool]
    remaining: int | None      # None: every matching request
    seconds: float = 0.0       # delay rules only

    def take(self, cmd: Command) -> bool:
        if self.remaining == 0 or not self.match(cmd):
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, number: int, client: socket.socket, server: socket.socket) -> None:
        self.number = number
        self.client = client
        self.server = server
        self.delayed: dict[int, float] = {}   # requestID -> seconds its reply is held
        self.commands: dict[int, Command] = {}
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class MongoProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.label = f"mongo-proxy:{self.port}->{upstream_host}:{upstream_port}"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._links: list[_Link] = []
        self._commands: list[Command] = []
        self._counts: collections.Counter = collections.Counter()
        self._hold_rules: list[_Rule] = []
        self._delay_rules: list[_Rule] = []
        self._held: list[Command] = []       # every request ever held, in order
        self._holding: list[Command] = []    # held now (not released, not dropped)
        self._dropped: list[Command] = []
        self._release_generation = 0
        self._delayed: list[Delayed] = []
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "MongoProxy":
        self._listener.listen(64)
        self._spawn(self._accept_loop, "accept")
        return self

    def stop(self) -> None:
        """Closes the listener and every connection; held requests are dropped."""
        self._stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        except OSError:
            pass
        self._listener.close()
        with self._changed:
            links = list(self._links)
            self._changed.notify_all()
        for link in links:
            link.close()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> "MongoProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def uri(self, database: str, **options: Any) -> str:
        """mongodb://127.0.0.1:PORT/database?options (e.g. socketTimeoutMS=60000)."""
        query = urllib.parse.urlencode(options)
        return f"mongodb://127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    # ------------------------------------------------------------------ controls

    def counts(self) -> collections.Counter:
        """Requests seen so far by (name, collection)."""
        with self._lock:
            return collections.Counter(self._counts)

    def count(self, name: str, collection: str | None = None) -> int:
        with self._lock:
            return self._counts[(name, collection)]

    def commands(self) -> list[Command]:
        with self._lock:
            return list(self._commands)

    def log_text(self, last: int = 60) -> str:
        with self._lock:
            shown = self._commands[-last:]
        return "\n".join(str(cmd) for cmd in shown)

    def delay_replies(self, seconds: float, match: Callable[[Command], bool] = any_command,
                      count: int | None = None) -> None:
        """Replies to the requests arriving from now on that `match` (at most `count` of
        them) are forwarded `seconds` after the server sent them."""
        with self._lock:
            self._delay_rules.append(_Rule(match, count, seconds))

    def clear_delays(self) -> None:
        """No further requests get delayed replies (those already decided still do)."""
        with self._lock:
            self._delay_rules.clear()

    def hold(self, match: Callable[[Command], bool], count: int | None = None) -> None:
        """Requests that `match` (at most `count` of them) are not forwarded until
        release(); nor is anything their connection sends after them."""
        with self._lock:
            self._hold_rules.append(_Rule(match, count))

    def release(self) -> int:
        """Ends every hold and forwards what was held (on connections still open);
        returns how many requests that was."""
        with self._changed:
            released = len(self._holding)
            self._hold_rules.clear()
            self._release_generation += 1
            self._changed.notify_all()
        return released

    def held(self) -> list[Command]:
        """The requests held now (neither released nor dropped)."""
        with self._lock:
            return list(self._holding)

    def dropped(self) -> list[Command]:
        """Held requests discarded, never forwarded, because their client went away."""
        with self._lock:
            return list(self._dropped)

    def delayed(self) -> list[Delayed]:
        with self._lock:
            return list(self._delayed)

    def wait_held(self, timeout: float, number: int = 1) -> Command:
        """The `number`-th request held since the proxy started, once it is."""
        return self._wait(lambda: self._held[number - 1] if len(self._held) >= number
                          else None, timeout, f"request #{number} to be held")

    def wait_delayed(self, timeout: float, number: int = 1) -> Delayed:
        """The `number`-th reply held by a delay rule, once the server has sent it."""
        return self._wait(lambda: self._delayed[number - 1] if len(self._delayed) >= number
                          else None, timeout, f"delayed reply #{number} from the server")

    def _wait(self, value: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = value()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    raise AssertionError(
                        f"{self.label}: waited {timeout}s for {what}; requests seen:\n"
                        + "\n".join(str(cmd) for cmd in self._commands[-40:]))
                self._changed.wait(remaining)

    # ------------------------------------------------------------------ threads

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"{self.label} {name}")
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        number = 0
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            number += 1
            link = _Link(number, client, server)
            with self._lock:
                if self._stopping.is_set():
                    link.close()
                    return
                self._links.append(link)
            self._spawn(self._requests, f"#{number} requests", link)
            self._spawn(self._replies, f"#{number} replies", link)

    def _forget(self, link: _Link) -> None:
        with self._changed:
            if link in self._links:
                self._links.remove(link)
            self._changed.notify_all()
        link.close()

    def _requests(self, link: _Link) -> None:
        """Client to server: count, maybe hold, note delays, forward."""
        try:
            while not link.closed:
                message = read_message(link.client)
                if message is None:
                    return
                cmd = parse_request(message, link.number)
                with self._changed:
                    self._commands.append(cmd)
                    self._counts[cmd.key] += 1
                    link.commands[cmd.request_id] = cmd
                    for rule in self._delay_rules:
                        if not cmd.more_to_come and rule.take(cmd):
                            link.delayed[cmd.request_id] = rule.seconds
                            break
                    held = any(rule.take(cmd) for rule in self._hold_rules)
                    if held:
                        self._held.append(cmd)
                        self._holding.append(cmd)
                        generation = self._release_generation
                    self._changed.notify_all()
                if held and not self._wait_for_release(link, cmd, generation):
                    return
                link.server.sendall(message)
        except OSError:
            return
        finally:
            self._forget(link)

    def _wait_for_release(self, link: _Link, cmd: Command, generation: int) -> bool:
        """Blocks until release() (True) or until the client goes away or the proxy
        stops (False: the request is dropped, never forwarded)."""
        while True:
            with self._changed:
                if self._release_generation != generation:
                    self._holding.remove(cmd)
                    self._changed.notify_all()
                    return True
                if self._stopping.is_set() or link.closed or self._client_gone(link):
                    self._holding.remove(cmd)
                    self._dropped.append(cmd)
                    self._changed.notify_all()
                    return False
                self._changed.wait(POLL_S)

    @staticmethod
    def _client_gone(link: _Link) -> bool:
        try:
            readable, _, _ = select.select([link.client], [], [], 0)
            if not readable:
                return False
            return link.client.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _replies(self, link: _Link) -> None:
        """Server to client: forward, after the delay a rule gave the request."""
        try:
            while not link.closed:
                message = read_message(link.server)
                if message is None:
                    return
                _, _, response_to, _ = _HEADER.unpack_from(message, 0)
                with self._changed:
                    seconds = link.delayed.pop(response_to, None)
                    cmd = link.commands.pop(response_to, None)
                    if seconds is not None and cmd is not None:
                        self._delayed.append(Delayed(cmd, time.monotonic(), seconds))
                        self._changed.notify_all()
                if seconds is not None and self._stopping.wait(seconds):
                    return
                link.client.sendall(message)
        except OSError:
            return
        finally:
            self._forget(link)


def upstream_of(server: Any) -> tuple[str, int]:
    """(host, port) of the `ferretdb` fixture's server (FerretDB or MONGO_TEST_URI)."""
    if getattr(server, "port", None):
        return "127.0.0.1", server.port
    base = getattr(server, "_base")  # ExternalMongo: the URI without its database
    return base.hostname or "127.0.0.1", base.port or 27017


@pytest.fixture
def mongo_proxy(ferretdb):
    """A MongoProxy in front of the test's `ferretdb`, stopped at teardown. List it
    before `chatd` so that chatd stops first."""
    proxy = MongoProxy(*upstream_of(ferretdb)).start()
    yield proxy
    proxy.stop()
