from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import IdempotencyKey, Timer


class ReadOnlyAdmin(admin.ModelAdmin):
    """The Django admin is a window for platform operators, not a second way to write: every change
    goes through the services (permissions, data scope, audit), i.e. the API."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Timer)
class TimerAdmin(ReadOnlyAdmin):
    list_display = ["id", "tenant", "kind", "key", "due_at", "status", "attempts", "fired_at"]
    list_filter = ["status", "kind"]
    search_fields = ["kind", "key"]


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "employee", "method", "path", "status_code"]
    exclude = ["response_body"]
