from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from .api import api


def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def home(request: HttpRequest) -> HttpResponse:
    # The web console replaces this page when it lands (web/ issue).
    return HttpResponse(
        "<!doctype html><meta charset=utf-8><title>经纬 SCRM</title>"
        "<h1>经纬 SCRM</h1><ul><li><a href=/api/docs>API 文档 /api/docs</a></li>"
        "<li><a href=/admin/>管理后台 /admin/</a></li></ul>"
    )


urlpatterns = [
    path("", home, name="home"),
    path("healthz", health, name="health"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("", include("jingwei.tickets.urls")),  # /f/<token>, /p/<token>: public pages
]
