"""Static files (WhiteNoise) streamed under ASGI without holding the event loop or the whole file.

WhiteNoise answers with a ``FileResponse`` over a plain file: Django's ASGI handler can only read
such a synchronous iterator by reading all of it in a thread first, and warns on each response
("StreamingHttpResponse must consume synchronous iterators"). This middleware, placed before
WhiteNoise's, hands the handler an asynchronous iterator instead: the file is read in blocks, each
in a worker thread, so a large asset (Swagger UI's bundle: 1.4 MB) neither stalls the loop nor
sits in memory whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO

from asgiref.sync import markcoroutinefunction
from django.http import FileResponse, HttpRequest, HttpResponseBase

BLOCK = 256 * 1024


async def _blocks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while block := await asyncio.to_thread(file.read, BLOCK):
        yield block


class AsyncFileResponses:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)
        if isinstance(response, FileResponse) and response.file_to_stream is not None:
            # The file stays among the response's closers: it is closed when the response is.
            response.streaming_content = _blocks(response.file_to_stream)
        return response
