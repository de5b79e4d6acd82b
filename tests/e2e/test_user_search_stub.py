"""The stand-in must answer like the deployed user-search service (SPEC §1). These
checks need no chatd: they keep the stub honest."""

from __future__ import annotations

import http.client
import urllib.parse
import xml.etree.ElementTree as ET

from user_search_stub import LEGACY_NOT_FOUND_BODY, NOT_FOUND_BODY, SEARCH_PATH

WEB = "{http://www.example.org/webservice}"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"


def lookup(stub, query: str, connection=None):
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", stub.port, timeout=5)
    connection.request("GET", f"{SEARCH_PATH}?{query}")
    response = connection.getresponse()
    result = response.status, response.getheader("Content-Type"), response.read().decode()
    if own:
        connection.close()
    return result


def test_known_user_gets_an_indented_soap_envelope(user_search):
    name = "o'brien & <co>"
    status, content_type, body = lookup(user_search, urllib.parse.urlencode({"username": name}))
    assert status == 200 and content_type.startswith("text/xml")
    assert "&amp;" in body and "&lt;co&gt;" in body and "\n    <soapenv:Body>" in body
    root = ET.fromstring(body)
    assert root.tag == SOAP + "Envelope"
    response = root.find(f"{SOAP}Body/{WEB}getUserByUsernameResponse")
    assert response.find(WEB + "username").text == name
    assert response.find(WEB + "id").text.isdigit()
    assert user_search.request_count(name) == 1


def test_unknown_missing_and_legacy_answers(user_search):
    user_search.unknown = {"ghost"}
    assert lookup(user_search, "username=ghost") == (500, "text/plain; charset=utf-8",
                                                     NOT_FOUND_BODY)
    assert lookup(user_search, "")[0] == 400
    assert lookup(user_search, "username=")[0] == 400
    user_search.legacy = True
    assert lookup(user_search, "username=ghost")[0::2] == (200, LEGACY_NOT_FOUND_BODY)


def test_keep_alive_and_malformed_mode(user_search):
    connection = http.client.HTTPConnection("127.0.0.1", user_search.port, timeout=5)
    assert lookup(user_search, "username=alice", connection)[0] == 200
    user_search.malformed = "truncated"
    status, _, body = lookup(user_search, "username=alice", connection)  # same socket
    assert status == 200 and "<web:username>alice</web:username>" in body
    try:
        ET.fromstring(body)
    except ET.ParseError:
        pass
    else:
        raise AssertionError("malformed mode produced well-formed XML")
    connection.close()
    assert user_search.request_count("alice") == 2
