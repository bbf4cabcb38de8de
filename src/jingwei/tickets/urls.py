"""Public pages without login: a template's form and a ticket's progress (see views)."""

from django.urls import path

from . import views

app_name = "tickets"

urlpatterns = [
    path("f/<str:token>", views.public_form, name="public_form"),
    path("p/<str:token>", views.progress, name="progress"),
    path("p/<str:token>/qr.png", views.progress_qr, {"fmt": "png"}, name="progress_qr_png"),
    path("p/<str:token>/qr.svg", views.progress_qr, {"fmt": "svg"}, name="progress_qr_svg"),
]
