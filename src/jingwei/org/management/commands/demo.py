from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jingwei.catalog.demo import load_demo_catalog
from jingwei.core.errors import DomainError
from jingwei.customers.demo import load_demo_customers
from jingwei.flows.demo import load_shipped_flows
from jingwei.notify.demo import load_demo_notifications
from jingwei.org.demo import DEMO_PASSWORD, demo_logins, load_demo
from jingwei.tickets.demo import load_demo_tickets


class Command(BaseCommand):
    help = "Load the demo tenant 经纬设备服务 (idempotent) and print the demo logins."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quiet", action="store_true", help="do not print the logins")

    def handle(self, *args: Any, quiet: bool, **options: Any) -> None:
        try:
            tenant = load_demo()
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        load_shipped_flows(tenant.pk)
        load_demo_customers(tenant.pk)
        load_demo_notifications(tenant.pk)
        load_demo_tickets(tenant.pk)
        load_demo_catalog(tenant.pk)
        if quiet:
            return
        self.stdout.write(f"演示企业：{tenant.name}   所有演示账号的密码：{DEMO_PASSWORD}")
        for username, name, role in demo_logins():
            self.stdout.write(f"  {username:<10} {name}  {role}")
