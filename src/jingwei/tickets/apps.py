from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "jingwei.tickets"
    label = "tickets"
    verbose_name = "工单"

    def ready(self) -> None:
        from . import flow_link  # noqa: F401  (keeps a ticket's stage and status with its flow)
