"""Request body size limit: 413 JSON for bodies over `max_bytes`, whether announced or streamed."""

import json
import re
from typing import Sequence, Tuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_body


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 before the app reads them into memory; `larger` lists (path regex,
    limit) pairs for routes allowed more (archive uploads)."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: Sequence[Tuple[str, int]] = ()):
        self.app = app
        self.max_bytes = max_bytes
        self.larger = [(re.compile(pattern), limit) for pattern, limit in larger]

    def limit_for(self, path: str) -> int:
        return next((limit for pattern, limit in self.larger if pattern.fullmatch(path)), self.max_bytes)

    async def _refuse(self, send: Send, size_text: str, max_bytes: int) -> None:
        body = json.dumps(error_body(f"request body {size_text} is over the limit of {max_bytes} bytes",
                                     "payload_too_large")).encode("utf-8")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = 0
                if announced > max_bytes:
                    await self._refuse(send, f"of {announced} bytes", max_bytes)
                    return
        state = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive() -> Message:
            if state["exceeded"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > max_bytes:
                    state["exceeded"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"] and not state["started"]:
            await self._refuse(send, f"of more than {max_bytes} bytes (streamed)", max_bytes)


__all__ = ["BodySizeLimitMiddleware"]
