from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEvent, ExportRecord


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    list_display = ["at", "tenant", "actor_name", "action", "subject_type", "subject_id"]
    list_filter = ["action", "tenant"]
    search_fields = ["actor_name", "action", "subject_label"]

    # The audit log is append-only, in the admin too.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ExportRecord)
class ExportRecordAdmin(admin.ModelAdmin[ExportRecord]):
    list_display = ["at", "tenant", "employee", "kind", "rows"]
