import functools
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from jingwei.tickets.smtp import start_server, stop_server

P = ParamSpec("P")
R = TypeVar("R")


def _with_fresh_connection(fn: Callable[P, R]) -> Callable[P, R]:
    """Worker threads outlive requests: drop broken or expired connections around each call, as
    Django does around a request."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return call


class Command(BaseCommand):
    help = (
        "Receive customer mail over SMTP and turn it into tickets and replies. "
        "Runs until SIGTERM/SIGINT."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()  # set by SIGTERM/SIGINT (or by a test)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=2525)
        parser.add_argument(
            "--workers", type=int, default=4, help="messages stored at the same time"
        )
        parser.add_argument(
            "--server-hostname", default=None, help="name in the greeting (default: this host)"
        )

    def handle(
        self,
        *args: Any,
        host: str,
        port: int,
        workers: int,
        server_hostname: str | None,
        **options: Any,
    ) -> None:
        # Imported here, not at module level: the services load the ticket models, and this
        # module must import (for `jingwei help`) without them.
        from jingwei.tickets.services.intake import mail_receive, mailbox_accepts

        # aiosmtpd logs every command with its addresses at INFO: keep customers' addresses out
        # of the logs unless someone asks for debugging.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())

        def deliver(rcpt: str, raw: bytes) -> None:
            mail_receive(rcpt, raw)

        controller = start_server(
            host,
            port,
            _with_fresh_connection(mailbox_accepts),
            _with_fresh_connection(deliver),
            workers=workers,
            server_hostname=server_hostname,
        )
        self.stdout.write(f"mail intake listening on {host}:{port}")
        try:
            while not self.stopping.wait(1.0):
                pass
        finally:
            stop_server(controller)
            self.stdout.write("mail intake stopped")
