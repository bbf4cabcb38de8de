from django.contrib import admin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin[Notification]):
    list_display = ["created_at", "tenant", "recipient", "severity", "title", "read_at"]
    list_filter = ["severity", "kind"]
