from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "jingwei.notify"
    label = "notify"
    verbose_name = "通知"

    def ready(self) -> None:
        from jingwei.core.timers import loop_poller

        from .delivery import deliver_due

        # The timer loop (`jingwei run`, `jingwei timers`) also fans out events and sends.
        loop_poller("notify.deliveries")(deliver_due)
