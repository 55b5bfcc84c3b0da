from django.apps import AppConfig


class WebConfig(AppConfig):
    """The playground page: a static single-page client served by Django at /playground/."""

    name = "web"
    default_auto_field = "django.db.models.BigAutoField"
