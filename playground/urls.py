"""URL configuration: health endpoints, the REST API and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from playground import health
from playground.api import api

urlpatterns = [
    path("", health.health, name="health"),
    path("health/ready", health.readiness, name="readiness"),
    path("admin/", admin.site.urls),
    path("", api.urls),
]
