"""JSON in and out of the service: request bodies parsed by `mapwise.strict_json`, answers rendered by orjson."""

from __future__ import annotations

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from mapwise.strict_json import strict_json


class Json(JSONResponse):
    """JSON rendered by orjson (numpy-free dicts of plain values); a JSONResponse, so OpenAPI shows the routes'
    response models."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class _StrictJsonRequest(Request):
    async def json(self) -> object:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read by `strict_json` (FastAPI turns its errors into a 422)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict
