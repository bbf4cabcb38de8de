from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "jingwei.customers"
    label = "customers"
    verbose_name = "客户"
