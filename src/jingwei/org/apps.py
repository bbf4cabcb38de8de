from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OrgConfig(AppConfig):
    name = "jingwei.org"
    label = "org"
    verbose_name = "组织与权限"

    def ready(self) -> None:
        from .services import permission_catalogue_sync

        post_migrate.connect(
            lambda sender, **kw: permission_catalogue_sync(), sender=self, weak=False
        )
