from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class ApiBodyLimitMiddleware:
    """Refuse an oversized API body before anything reads it, as JSON rather than Django's HTML 400."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.API_MAX_BODY_BYTES:
                return JsonResponse(
                    {
                        "code": "body_too_large",
                        "message": f"请求体过大：{length} 字节，上限 {settings.API_MAX_BODY_BYTES} 字节",
                        "field": None,
                    },
                    status=413,
                )
        return self.get_response(request)
