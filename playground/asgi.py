"""ASGI entry point: HTTP goes to Django, WebSockets to the Channels router."""

from __future__ import annotations

import gc
import logging
import os

import sniffio
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
from providers.registry import providers  # noqa: E402

for _error in providers.preload():  # SDK imports now, not on the first comparison's event loop
    logging.getLogger(__name__).error("Provider not loaded: %s", _error)

# One per process, shared by every transport that holds sockets (accounts/limits.py).
connection_limiter = ConnectionLimiter()
# One per process: the comparisons running here, whichever transport started or watches them.
live = LiveComparisons()

application = ProtocolTypeRouter(
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
application = socketio_application(application, live=live, connection_limiter=connection_limiter)

# anyio (under httpx) asks sniffio which async library runs for every read with a timeout, and
# sniffio answers by inspecting the current task: ~6 % of the server's CPU at 400 streams. This
# process runs asyncio only, so declare it once, through the variable sniffio reads first and
# anyio itself sets (tasks and callbacks inherit it from this module's import context).
sniffio.current_async_library_cvar.set("asyncio")

# Everything loaded so far (Django, both SDKs: ~280,000 objects) lives as long as the process.
# Left to the cyclic collector, each full collection scanned all of it with the event loop
# stopped: 75-100 ms, a stall every stream saw (docs/benchmarks.md). Frozen, it is never scanned.
gc.collect()
gc.freeze()
