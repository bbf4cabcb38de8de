from typing import Any

from django.core.management.base import BaseCommand

from jingwei.core.timers import fire_due, run_loop


class Command(BaseCommand):
    help = "Fire due timers in a loop (SLA steps, reminders, grant expiry). Stop with SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--interval", type=float, default=None, help="seconds between polls")
        parser.add_argument("--once", action="store_true", help="fire what is due now, then exit")

    def handle(self, *args: Any, interval: float | None, once: bool, **options: Any) -> None:
        if once:
            self.stdout.write(f"fired {fire_due()} timer(s)")
            return
        run_loop(interval=interval)
