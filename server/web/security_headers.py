"""One middleware gives every answer of the app (pages, Open311, the PWA's files, the sync gateway mounted at
/sync) the headers of server/domain/http_headers.py. An answer that sets its own policy keeps it: a stored
photo (its sandbox), the service worker's script (server/web/pwa_routes.py). A 500 (a bug) is answered outside
every middleware, by Starlette's last resort: `server_error` gives it the headers too."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.domain.http_headers import PAGE_HEADERS


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """The answer to an unhandled exception (logged and re-raised by Starlette after it is sent)."""
    return PlainTextResponse("Internal Server Error", status_code=500, headers=PAGE_HEADERS)
