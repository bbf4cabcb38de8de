from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "jingwei.notify"
    label = "notify"
    verbose_name = "通知"
