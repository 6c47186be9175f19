"""URLs of the test project: WebSocket views next to a plain one."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("ws/echo/", views.echo),
    path("ws/fail/", views.fail),
    path("ws/rooms/<str:name>/", views.room),
    path("plain/", views.plain),
]
