"""Real concurrency for tests on PostgreSQL: calls released together from threads, each on its own
database connection (SQLite serialises writers, so these tests skip there)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="overlapping writers are a PostgreSQL property (SQLite serialises them)",
)


def run_together(*calls: Callable[[], Any], timeout: float = 60) -> list[Any]:
    """Run the calls in threads released together; each result, or the exception it raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            start.wait(timeout=10)
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results
