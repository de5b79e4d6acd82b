"""Plain HTTP on the WebSocket port."""

from __future__ import annotations

import http.client
import json


def get(server, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_healthz_answers_200_json(chatd):
    server = chatd()
    status, content_type, body = get(server, "/healthz")
    assert status == 200, f"/healthz -> {status} {body[:200]!r}"
    assert "json" in content_type, f"/healthz Content-Type is {content_type!r}"
    json.loads(body)


def test_unknown_path_is_404(chatd):
    server = chatd()
    status, _, body = get(server, "/nope")
    assert status == 404, f"/nope -> {status} {body[:200]!r}"
