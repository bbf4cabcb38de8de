from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run background jobs from the database queue (django-tasks-db). --batch exits when empty."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--queue-name", default="*", help="queues to serve, * for all")

    def handle(
        self, *args: Any, batch: bool, interval: float, queue_name: str, **options: Any
    ) -> None:
        call_command(
            "db_worker",
            batch=batch,
            interval=interval,
            queue_name=queue_name,
            startup_delay=False,
            reload=False,
            verbosity=options.get("verbosity", 1),
        )
