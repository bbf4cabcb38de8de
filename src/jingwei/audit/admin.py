from django.contrib import admin

from jingwei.core.admin import ReadOnlyAdmin

from .models import AuditEvent, ExportRecord


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "tenant", "actor_name", "action", "subject_type", "subject_id"]
    list_filter = ["action", "tenant"]
    search_fields = ["actor_name", "action", "subject_label"]


@admin.register(ExportRecord)
class ExportRecordAdmin(ReadOnlyAdmin):
    list_display = ["at", "tenant", "employee", "kind", "rows"]
