"""The bare endpoint bench/serve.py measures mapwise against: the HTTP limit on this machine.

Same route (POST /recommendations), a request model of the same fields and strictness, a response of
the same JSON shape (10 items with score, reason, title, category, price; model; notes), rendered by
orjson, on the same uvicorn settings as `mapwise serve` (uvloop, httptools with the same read bounds,
no access log, N workers). The handler does nothing: no key, no lookup, no model.

    python bench/bare_app.py --port 8766 --workers 2
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Annotated

import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mapwise.params import ServeParams
from mapwise.serving.http_limits import BoundedHttpToolsProtocol

_ID = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$")]
ANSWER = orjson.dumps({
    "items": [{"item_id": f"SKU{i:06d}", "score": 1.0 - i / 100, "reason": "model", "title": f"item {i}",
               "category": "topic", "price": 9.99} for i in range(10)],
    "customer_known": True, "strategy": "model", "model": {"version": "bare", "name": "bare"}, "notes": [],
})


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    categories: list[str] | None = None
    min_price: float | None = None
    max_price: float | None = None
    allow_items: list[_ID] | None = None
    deny_items: list[_ID] = []


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    customer_id: _ID
    k: int = Field(10, ge=1, le=100)
    recent_items: list[_ID] = []
    exclude_purchased: bool = False
    filters: Filters | None = None


app = FastAPI()


@app.post("/recommendations")
async def recommendations(body: Body) -> Response:
    return Response(ANSWER, media_type="application/json")


@app.get("/ready")
def ready() -> dict:
    return {"ready": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    s = ServeParams()
    http = partial(BoundedHttpToolsProtocol, max_header_bytes=s.max_header_bytes, request_timeout=s.request_timeout_seconds)
    uvicorn.run("bench.bare_app:app", host="127.0.0.1", port=args.port, workers=args.workers, loop="uvloop", http=http,
                ws="none", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
