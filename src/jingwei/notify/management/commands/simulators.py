import json
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from jingwei.notify.simulators import Simulators, serve


class Command(BaseCommand):
    help = (
        "Serve local simulators of Aliyun SMS, WeCom, the DingTalk robot and a webhook receiver "
        "on one port (/sms/, /wecom/, /dingtalk/, /webhook/), for demos. Runs until SIGTERM/SIGINT."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()  # set by SIGTERM/SIGINT (or by a test)
        self.base_url = ""

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8025, help="0: any free port")
        parser.add_argument(
            "--quiet", action="store_true", help="do not print each message the simulators accept"
        )

    def handle(self, *args: Any, host: str, port: int, quiet: bool, **options: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())

        def show(kind: str, record: Any) -> None:
            self.stdout.write(f"[{kind}] {record}")

        sims = Simulators()
        if not quiet:
            for sim in (sims.sms, sims.wecom, sims.dingtalk, sims.webhook):
                sim.on_record = show
        served = serve(sims.app(), host, port)
        self.base_url = served.url
        self.stdout.write(f"notification simulators listening on {served.url}")
        settings = Simulators.channel_settings(served.url)
        self.stdout.write(f"  sms       {served.url}/sms/")
        self.stdout.write(f"  wecom     {served.url}/wecom")
        self.stdout.write(f"  dingtalk  {served.url}/dingtalk/robot/send")
        self.stdout.write(f"  webhook   {served.url}/webhook/")
        self.stdout.write("channel settings that point at them (demo credentials):")
        self.stdout.write(json.dumps(settings, ensure_ascii=False, indent=2))
        self.stdout.flush()
        try:
            while not self.stopping.wait(1.0):
                pass
        finally:
            served.stop()
            self.stdout.write("notification simulators stopped")
