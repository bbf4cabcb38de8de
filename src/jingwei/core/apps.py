from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "jingwei.core"
    label = "core"
    verbose_name = "基础设施"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        # Each app registers the handlers its timers fire in `<app>/timer_handlers.py`.
        autodiscover_modules("timer_handlers")
