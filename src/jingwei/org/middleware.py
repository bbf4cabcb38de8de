from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from .models import Employee


class FrozenAccountMiddleware:
    """A frozen or departed account loses its console and admin session at its next request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            blocked = Employee.objects.filter(user_id=user.pk).exclude(
                status="active", frozen_at__isnull=True
            )
            if blocked.exists():
                logout(request)
        return self.get_response(request)
