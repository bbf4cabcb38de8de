from django.contrib import admin

from .models import Timer


@admin.register(Timer)
class TimerAdmin(admin.ModelAdmin[Timer]):
    list_display = ["id", "tenant", "kind", "key", "due_at", "status", "attempts", "fired_at"]
    list_filter = ["status", "kind"]
    search_fields = ["kind", "key"]
