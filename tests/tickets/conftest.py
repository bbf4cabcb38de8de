"""`console`: the console's reference implementation (console_reference.mjs) under node, one process
for the session; tests that need it are skipped where node is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HARNESS = Path(__file__).with_name("console_reference.mjs")


class Console:
    def __init__(self, process: subprocess.Popen[str]):
        self.process = process

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the console reference stopped"
        answer: dict[str, Any] = json.loads(line)
        return answer


@pytest.fixture(scope="session")
def console() -> Iterator[Console]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the console parity tests need it")
    process = subprocess.Popen(
        [node, str(HARNESS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        yield Console(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


# --- tickets: the shipped flows and templates in the test tenant ------------------------------


@pytest.fixture
def shipped(org: Any, admin: Any) -> dict[str, Any]:
    """The test tenant with the shipped flows and the four shipped templates."""
    from jingwei.flows.demo import load_shipped_flows
    from jingwei.tickets.demo import load_shipped_templates

    load_shipped_flows(org.tenant.pk)
    return {t.key: t for t in load_shipped_templates(org.tenant.pk)}
