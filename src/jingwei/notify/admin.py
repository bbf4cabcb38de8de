from django.contrib import admin

from jingwei.core.admin import ReadOnlyAdmin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "recipient", "severity", "title", "read_at"]
    list_filter = ["severity", "kind"]
