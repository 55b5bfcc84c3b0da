"""TLS contexts shared by the providers' HTTP clients.

Each SDK client built its own context, loading the CA bundle: ~50 ms of CPU per client on a
slow machine (a process builds one client per provider and event loop; the provider tests built
130). The contexts are the ones the clients would build themselves (same function, same
environment: ``SSL_CERT_FILE`` and the like), once per process, when this module is imported:
with the backends, in the start-up preload's thread, not on the first comparison's event loop.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def httpx2_context() -> ssl.SSLContext:
    """What an ``httpx2`` client (the OpenAI and Anthropic SDKs') builds by default."""
    import httpx2

    return httpx2.create_ssl_context()


@functools.cache
def httpx_context() -> ssl.SSLContext:
    """What an ``httpx`` client (the Gemini backend's) builds by default."""
    import httpx

    return httpx.create_ssl_context()


httpx2_context()
httpx_context()
