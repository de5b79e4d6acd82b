"""chatd's HTTP side as the tests read it: GET a path, scrape and strictly parse /metrics
(Prometheus text format 0.0.4), and poll a value until it reaches what a test waits for
(a deadline, never a fixed sleep).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time
from typing import Any, Callable

import pytest

POLL_S = 0.02


def http_get(server, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, body
    finally:
        connection.close()


def chat_history(server, user1: str, user2: str) -> tuple[str, list[dict]]:
    """(the chat's key, every message oldest first) through `server`'s REST API, paged."""
    messages: list[dict] = []
    while True:
        after = messages[-1]["seq"] if messages else 0
        status, _, body = http_get(server, f"/api/chats/{user1}/{user2}/messages"
                                           f"?after={after}&limit=500")
        assert status == 200, f"{server.label}: GET messages answered {status}: {body[:200]!r}"
        page = json.loads(body)
        messages += page["messages"]
        if not page["has_more"]:
            return page["chat"], messages


async def poll(fetch: Callable[[], Any], predicate: Callable[[Any], bool], what: str,
               timeout: float = 10.0) -> Any:
    """Calls `fetch` (blocking, run in a thread) until `predicate` holds on its result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(fetch)
        if predicate(value):
            return value
        if loop.time() > deadline:
            pytest.fail(f"{what}: not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(POLL_S)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout}s"
        time.sleep(POLL_S)


# ---------------------------------------------------------------------- /metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


class Metrics:
    """One scrape of /metrics, parsed strictly as the Prometheus text format (0.0.4)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset], float] = {}
        assert text.endswith("\n"), "the exposition ends with a line feed"
        for number, line in enumerate(text.split("\n")[:-1], 1):
            where = f"/metrics line {number}: {line!r}"
            assert line, f"{where}: empty line"
            if line.startswith("#"):
                match = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$", line)
                assert match, f"{where}: not a HELP or TYPE line"
                keyword, name, rest = match.groups()
                table = self.helps if keyword == "HELP" else self.types
                assert name not in table, f"{where}: second {keyword} for {name}"
                if keyword == "TYPE":
                    assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), where
                table[name] = rest
                continue
            match = _SAMPLE.match(line)
            assert match, f"{where}: not a sample"
            name, label_text, value = match.groups()
            labels = {}
            if label_text:
                position = 0
                while position < len(label_text):
                    label = _LABEL.match(label_text, position)
                    assert label, f"{where}: bad label at {label_text[position:]!r}"
                    labels[label.group(1)] = re.sub(
                        r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1),
                        label.group(2))
                    position = label.end()
                    if position < len(label_text):
                        assert label_text[position] == ",", f"{where}: labels not comma-separated"
                        position += 1
            family = self._family(name)
            assert family in self.types, f"{where}: sample before its family's TYPE line"
            key = (name, frozenset(labels.items()))
            assert key not in self.samples, f"{where}: series written twice"
            self.samples[key] = float(value)

    def __repr__(self) -> str:
        shown = sorted(f"{name}{dict(labels) or ''}={value:g}"
                       for (name, labels), value in self.samples.items()
                       if value and not name.endswith("_bucket"))
        return "<metrics " + ", ".join(shown) + ">"

    def _family(self, name: str) -> str:
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.types.get(base) == "histogram":
                return base
        return name

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def value(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"/metrics has no series {name}{labels or ''}"
        return self.samples[key]

    def histogram(self, name: str, **labels: str) -> dict[str, Any]:
        """Buckets (le -> cumulative count, in increasing le), sum and count; checks that
        buckets are cumulative, end at +Inf, and that _count equals the +Inf bucket."""
        assert self.types.get(name) == "histogram", f"{name} is not a histogram"
        buckets = []
        for (sample, label_set), value in self.samples.items():
            label_map = dict(label_set)
            le = label_map.pop("le", None)
            if sample == f"{name}_bucket" and label_map == labels:
                buckets.append((float(le), value))
        buckets.sort()
        assert buckets and buckets[-1][0] == float("inf"), f"{name}: no le=\"+Inf\" bucket"
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), f"{name}: buckets are not cumulative: {buckets}"
        count = self.value(f"{name}_count", **labels)
        assert count == counts[-1], f"{name}: _count {count} != +Inf bucket {counts[-1]}"
        return {"buckets": buckets, "sum": self.value(f"{name}_sum", **labels), "count": count}


def scrape(server) -> Metrics:
    status, headers, body = http_get(server, "/metrics")
    assert status == 200, f"/metrics answered {status}: {body[:200]!r}"
    content_type = headers.get("content-type", "")
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type, (
        f"/metrics Content-Type is {content_type!r}")
    return Metrics(body.decode("utf-8"))


def metric(server, name: str, **labels: str) -> float | None:
    """The value of one series of `server`'s /metrics, None when it has none."""
    metrics = scrape(server)
    return metrics.value(name, **labels) if metrics.has(name, **labels) else None


async def wait_metric(server, name: str, predicate, what: str, timeout: float = 10.0,
                      **labels: str) -> float:
    """Polls a series until `predicate` holds for it; its value then."""
    return await poll(lambda: metric(server, name, **labels),
                      lambda value: value is not None and predicate(value),
                      f"{server.label}: {name}{labels or ''} {what}", timeout)
