"""ASGI entry point: HTTP goes to Django, `/ws` to the Channels router, `/socket.io/` to Socket.IO.

``application`` is what servers run (``manage.py serve``, ``daphne playground.asgi:application``,
``uvicorn``): it performs the process start-up (crash sweep, provider preload, heap freeze) on its
first event, see ``playground.startup``. ``router`` is the same stack without it, for in-process
clients (tests): importing this module changes nothing else in the importing process.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: these import models.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from accounts.limits import ConnectionLimiter  # noqa: E402
from accounts.middleware import ClerkAuthMiddleware  # noqa: E402
from comparisons.live.core import LiveComparisons  # noqa: E402
from comparisons.sio import socketio_application  # noqa: E402
from playground.origin import origin_validator  # noqa: E402
from playground.routing import websocket_urlpatterns  # noqa: E402
from playground.startup import ProcessApplication  # noqa: E402

# One per process, shared by every transport that holds sockets (accounts/limits.py).
connection_limiter = ConnectionLimiter()
# One per process: the comparisons running here, whichever transport started or watches them.
live = LiveComparisons()

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_validator(
            ClerkAuthMiddleware(
                URLRouter(websocket_urlpatterns(connection_limiter=connection_limiter, live=live))
            ),
            settings.CORS_ORIGIN,
        ),
    }
)

# Socket.IO (the seed's frontend) at /socket.io/, beside /ws, on the same live core and limits.
application = ProcessApplication(
    socketio_application(router, live=live, connection_limiter=connection_limiter)
)
