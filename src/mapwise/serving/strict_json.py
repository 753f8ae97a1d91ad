"""JSON in and out of the service: request bodies parsed strictly (RFC 8259), answers rendered by orjson."""

from __future__ import annotations

import json
import math

import orjson
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute


class Json(Response):
    """JSON rendered by orjson (numpy-free dicts of plain values)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def strict_json(raw: bytes) -> object:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity, no duplicate keys; json.JSONDecodeError otherwise."""
    try:
        return json.loads(raw.decode(), object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_float=_finite)
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer past Python's digit limit
        raise json.JSONDecodeError("number too long", "", 0) from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) < len(pairs):
        raise json.JSONDecodeError("duplicate keys", "", 0)
    return found


def _no_constant(name: str) -> float:
    raise json.JSONDecodeError(f"{name} is not JSON", "", 0)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError("number out of range", "", 0)
    return value


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
