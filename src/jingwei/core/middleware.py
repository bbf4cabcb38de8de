from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

_FALLBACK = {
    404: ("not_found", "不存在"),
    405: ("method_not_allowed", "该地址不支持此请求方法"),
}


class ApiErrorsMiddleware:
    """The API's error shape also for what happens outside its views: an oversized body is refused
    before anything reads it (413), and an unknown path or method answers JSON, not HTML."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # A file upload (an import) may be larger than a JSON body; its reader bounds it again.
        multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
        limit = settings.API_MAX_UPLOAD_BYTES if multipart else settings.API_MAX_BODY_BYTES
        if length > limit:
            return _error(
                413, "body_too_large", f"请求体过大：{length} 字节，上限 {limit} 字节", "body"
            )
        response = self.get_response(request)
        fallback = _FALLBACK.get(response.status_code)
        if fallback and not response.get("Content-Type", "").startswith("application/json"):
            replaced = _error(response.status_code, *fallback, None)
            if "Allow" in response:
                replaced["Allow"] = response["Allow"]
            return replaced
        return response


def _error(status: int, code: str, message: str, field: str | None) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "field": field}, status=status)
