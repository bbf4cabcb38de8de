from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "jingwei.flows"
    label = "flows"
    verbose_name = "流程引擎"

    def ready(self) -> None:
        from . import actions  # noqa: F401  (registers the engine's own service-task actions)
