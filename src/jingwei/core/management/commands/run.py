"""`jingwei run`: the web server, the task worker and the timer loop, together, in one command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Start web (gunicorn) + worker + timer loop; stop all with Ctrl+C. Any one dying stops all."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2"))
        )
        parser.add_argument(
            "--mail-port",
            type=int,
            default=int(os.environ.get("MAIL_INTAKE_PORT", "0")),
            help="also receive mail for the service mailboxes on this port (0: not)",
        )
        parser.add_argument(
            "--simulators-port",
            type=int,
            default=int(os.environ.get("NOTIFY_SIMULATORS_PORT", "0")),
            help="also serve the SMS/WeCom/DingTalk/webhook simulators on this port (0: not)",
        )

    def handle(
        self,
        *args: Any,
        host: str,
        port: int,
        web_workers: int,
        mail_port: int,
        simulators_port: int,
        **options: Any,
    ) -> None:
        me = [sys.executable, "-m", "jingwei.cli"]
        commands = {
            "web": [
                sys.executable,
                "-m",
                "gunicorn",
                "jingwei.wsgi:application",
                "--bind",
                f"{host}:{port}",
                "--workers",
                str(web_workers),
                "--threads",
                "4",
                "--access-logfile",
                "-",
                "--graceful-timeout",
                "10",
            ],
            "worker": [*me, "worker"],
            "timers": [*me, "timers"],
        }
        if mail_port:
            commands["mail"] = [*me, "mailserver", "--host", host, "--port", str(mail_port)]
        if simulators_port:
            # Loopback only: the demo's channels point here, and nobody else should post to it.
            commands["simulators"] = [*me, "simulators", "--port", str(simulators_port)]
        children = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}  # noqa: S603
        self.stdout.write(
            f"经纬 SCRM 已启动: http://{host}:{port}/  (API 文档 /api/docs)", ending="\n"
        )
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not stopping:
                dead = [n for n, p in children.items() if p.poll() is not None]
                if dead:
                    self.stderr.write(f"{', '.join(dead)} exited; stopping the rest")
                    break
                time.sleep(0.5)
        finally:
            for p in children.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for p in children.values():
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
