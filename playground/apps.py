"""Application configs of the project's own making."""

from __future__ import annotations

from django.apps import AppConfig


class DaphneConfig(AppConfig):
    """daphne's app (its ``runserver`` command), without ``daphne.apps``.

    ``daphne.apps`` imports ``daphne.server`` (Twisted, autobahn: ~0.17 s of CPU) so that every
    Django process, ``manage.py compare`` and the test workers included, paid for a server it does
    not run. ``manage.py serve`` and daphne's ``runserver`` import it themselves, before they start
    the reactor. daphne's check (listed before staticfiles) holds by the settings' order.
    """

    name = "daphne"
    label = "daphne"
    verbose_name = "Daphne"
