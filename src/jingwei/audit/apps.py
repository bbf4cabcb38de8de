from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "jingwei.audit"
    label = "audit"
    verbose_name = "审计"
