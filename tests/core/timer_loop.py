"""A timer loop process for the tests: the real `run_loop`, with the probe handlers registered.

Run as `python -m tests.core.timer_loop` from the project root, with DATABASE_URL set.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jingwei.settings")
django.setup()

import tests.core.timer_probe  # noqa: E402, F401  (registers the probe handlers)
from jingwei.core.timers import run_loop  # noqa: E402

if __name__ == "__main__":
    run_loop(interval=float(os.environ.get("TIMER_INTERVAL", "0.05")))
