"""URL configuration: health endpoints, the playground page, the REST API and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from playground import health
from playground.api import api

urlpatterns = [
    path("", health.health, name="health"),
    path("health/ready", health.readiness, name="readiness"),
    path("admin/", admin.site.urls),
    path("playground/", include("web.urls")),
    path("", api.urls),
]
