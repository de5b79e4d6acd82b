"""Runs the e2e tests' user-search stub (tests/e2e/user_search_stub.py) on its own, for
benchmarking: every username exists. Prints its URL, then serves until SIGTERM/SIGINT.

    python3 bench/baseline/user_search_stub.py
    -> user-search stub listening on http://127.0.0.1:PORT/user/soap
"""

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "e2e"))
from user_search_stub import UserSearchStub  # noqa: E402


class BenchStub(UserSearchStub):
    def _record(self, line: str) -> None:
        pass  # the tests' request log would grow for as long as the benchmark runs


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stub = BenchStub().start()
    print(f"user-search stub listening on {stub.url}", flush=True)
    stop.wait()
    stub.stop()


if __name__ == "__main__":
    main()
