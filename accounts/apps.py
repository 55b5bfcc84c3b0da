from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts (Clerk authentication)"

    def ready(self) -> None:
        # Registers the system checks and the setting_changed receiver.
        from accounts import checks, verification  # noqa: F401
