"""Real processes against the pytest test database: the worker, the timer loop, and their care.

Subprocesses see only committed data, so tests using these need `django_db(transaction=True)`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.db import connection

PROJECT_DIR = Path(__file__).resolve().parents[2]


def subprocess_database_url() -> str:
    """DATABASE_URL for the database this test is using (the test database, not the real one)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        auth = quote(s["USER"] or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        host = s["HOST"] or "localhost"
        port = s["PORT"] or 5432
        return f"postgres://{auth}@{host}:{port}/{quote(s['NAME'], safe='')}"
    raise NotImplementedError(f"no subprocess DATABASE_URL for {connection.vendor}")


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = subprocess_database_url()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_DIR), env.get("PYTHONPATH", "")) if p
    )
    env["DJANGO_SETTINGS_MODULE"] = "jingwei.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A started process whose output goes to a log file (read back for failure messages)."""

    def __init__(self, args: list[str], log: Path, **env: str) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=PROJECT_DIR,
            env=subprocess_env(**env),
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, and wait for a graceful exit; SIGKILL if it does not come."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        if self.alive():
            self.popen.kill()
        code = self.popen.wait()
        self._out.close()
        return code


@contextmanager
def running(*procs: Proc) -> Iterator[None]:
    """Whatever happens in the block, no process outlives it."""
    try:
        yield
    finally:
        for p in procs:
            p.kill()


def wait_until(
    condition: Callable[[], bool], *, what: str, procs: list[Proc], deadline: float = 60
) -> None:
    """Poll until `condition` holds. Fails (with the processes' output) if one of them dies or the
    deadline passes — the deadline bounds a hang, it is not what the test measures."""
    end = time.monotonic() + deadline
    while not condition():
        dead = [p for p in procs if not p.alive()]
        if dead or time.monotonic() > end:
            reason = "a process exited" if dead else f"not within {deadline:.0f}s"
            logs = "\n".join(f"--- pid {p.pid} ---\n{p.output()[-4000:]}" for p in procs)
            raise AssertionError(f"waiting for {what}: {reason}\n{logs}")
        time.sleep(0.05)


def start_timer_loop(log: Path) -> Proc:
    """The real timer loop (`core.timers.run_loop`) with the probe handlers registered."""
    return Proc(["-m", "tests.core.timer_loop"], log, TIMER_INTERVAL="0.05")


def wait_ready(*loops: Proc) -> None:
    wait_until(
        lambda: all("timer loop started" in p.output() for p in loops),
        what="timer loops to start",
        procs=list(loops),
    )


def run_worker_batch(log: Path, timeout: float = 60) -> tuple[int, str]:
    """`jingwei worker --batch`: run what is queued, then exit."""
    proc = Proc(["-m", "jingwei.cli", "worker", "--batch", "--interval", "0"], log)
    try:
        code = proc.popen.wait(timeout)
    finally:
        proc.kill()
    return code, proc.output()
