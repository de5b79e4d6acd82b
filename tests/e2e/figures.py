"""Figures a test measures (memory, counts) shown at the end of the run.

pytest hides what passing tests print; `report` keeps the line, and conftest's
pytest_terminal_summary prints every kept line under "figures", so the output of
the test command carries them (RSS before/after a flood, a drain's counts)."""

from __future__ import annotations

LINES: list[str] = []


def report(line: str) -> None:
    LINES.append(line)
    print(line)
