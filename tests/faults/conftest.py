"""Shows the fault suite's report at the end of the run, whether or not output is captured."""

from __future__ import annotations

from typing import Any

from tests.faults import SUMMARY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("fault suite")
        for line in SUMMARY:
            terminalreporter.write_line(line)
