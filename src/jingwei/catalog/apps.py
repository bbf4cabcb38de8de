from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "jingwei.catalog"
    label = "catalog"
    verbose_name = "项目与备件"

    def ready(self) -> None:
        # Replaces the deferred placeholders tickets registered for the SOP's parts steps.
        from . import flow_link  # noqa: F401
