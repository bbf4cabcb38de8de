from django.contrib import admin

from jingwei.core.admin import ReadOnlyAdmin

from .models import Customer, Identity, MergeCandidate, MergeRecord


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "kind", "tenant", "region", "owner", "level", "merged_into"]
    list_filter = ["tenant", "kind", "level"]
    search_fields = ["name", "company_name"]


@admin.register(Identity)
class IdentityAdmin(ReadOnlyAdmin):
    # Values are personal data: the operator's window shows kinds and owners, not the values.
    list_display = ["id", "tenant", "customer", "kind", "namespace", "status", "last_seen_at"]
    list_filter = ["kind", "status"]
    exclude = ["value"]


@admin.register(MergeCandidate)
class MergeCandidateAdmin(ReadOnlyAdmin):
    list_display = ["id", "tenant", "customer", "other", "reason", "score", "status"]
    list_filter = ["status", "reason"]


@admin.register(MergeRecord)
class MergeRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "tenant", "source", "target", "merged_at", "undone_at"]
