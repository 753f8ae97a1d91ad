"""Read bounds for the service's HTTP requests: a head and a body are capped in bytes, a request in time.

uvicorn's httptools protocol bounds neither (`h11_max_incomplete_event_size` is for h11 only, and
`timeout_keep_alive` only covers the wait between requests), so a half-sent request could hold a
connection open for good and a huge header was buffered whole. This protocol answers 431 once a head
passes `max_header_bytes`, and 408 when a request (head and body) has not arrived within
`request_timeout` seconds of the connection or of its first byte; both close the connection, without
reading the rest, in the service's error shape. `BodyLimit`, an ASGI middleware, answers 413 to a body
over `max_body_bytes`, declared or not.
"""

from __future__ import annotations

import asyncio

import httptools
import orjson
from fastapi import HTTPException
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class _HeadTooLarge(Exception):
    """Raised from the parser's callback to stop parsing a head over the limit."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a byte cap on request heads and a deadline on reading requests.

    Pass it to uvicorn with its limits bound, e.g. `http=functools.partial(BoundedHttpToolsProtocol, ...)`.
    """

    def __init__(self, *args, max_header_bytes: int, request_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes, self.request_timeout = max_header_bytes, request_timeout
        self._head_bytes: int | None = 0  # bytes of the head being read; None while a head is complete
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if not self._head_too_large():
                self.logger.warning("Invalid HTTP request received.")
                self._refuse(400, "invalid HTTP request")
        if self._head_too_large():
            self._refuse(431, f"request headers over {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
        if size > self.max_header_bytes:  # a whole head that arrived in one read
            self._head_bytes = size
            raise _HeadTooLarge
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._head_bytes = 0
        super().on_message_complete()

    def _head_too_large(self) -> bool:
        return self._head_bytes is not None and self._head_bytes > self.max_header_bytes

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """The request did not arrive in time: 408, unless a response is already on its way (then just close)."""
        self._deadline = None
        reading_body = self._head_bytes is None
        cycle = self.cycle
        if cycle is not None and (cycle.response_started if reading_body else not cycle.response_complete):
            self.transport.close()
            return
        if reading_body:  # the app waits on the body: it gets a disconnect, and its answer goes nowhere
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(408, f"request not received within {self.request_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `{"error": message}` with this status and close the connection."""
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length is declared."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"body over {self.limit} bytes")
            return message

        return await self.app(scope, limited, send)


async def _too_large(send, limit: int) -> None:
    body = orjson.dumps({"error": f"body over {limit} bytes"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
