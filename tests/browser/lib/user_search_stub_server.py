"""Runs the user-search stand-in of the end-to-end tests (tests/e2e/user_search_stub.py)
for the browser tests, as a process of its own.

    python3 user_search_stub_server.py NAME...

Every NAME is unknown (HTTP 500 "no rows in result set", so chatd closes with 4404);
every other name exists. It prints its URL on one line once it listens, and serves
until its standard input is closed.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "e2e"))

from user_search_stub import UserSearchStub  # noqa: E402

stub = UserSearchStub()
stub.unknown = set(sys.argv[1:])
stub.start()
print(stub.url, flush=True)
sys.stdin.read()
stub.stop()
