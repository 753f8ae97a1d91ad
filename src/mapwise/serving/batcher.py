"""Requests waiting on the model at the same moment share one onnxruntime call."""

from __future__ import annotations

import asyncio

import numpy as np

from mapwise.serving.recommendations import Recommender


class Batcher:
    """Requests waiting on the model at the same moment share one onnxruntime call.

    Scoring runs on the event loop right after the requests that are ready have been parsed, so a
    lone request waits for nothing and a burst becomes one batch (the model costs far less per row
    in a batch than one call per request).
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self.pending: list[tuple[Recommender, np.ndarray, asyncio.Future]] = []
        self.scheduled = False

    async def score(self, rec: Recommender, history: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((rec, history, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self.pending, self.scheduled = self.pending, [], False
        for start in range(0, len(pending), self.max_batch):
            chunk = pending[start : start + self.max_batch]
            for rec in {id(r): r for r, _, _ in chunk}.values():  # normally one model; two around a swap
                mine = [(h, f) for r, h, f in chunk if r is rec]
                try:
                    scores = rec.infer([h for h, _ in mine])
                except Exception as err:  # noqa: BLE001  (fails these requests with 500, not the worker)
                    for _, future in mine:
                        future.set_exception(err)
                    continue
                for row, (_, future) in enumerate(mine):
                    future.set_result(scores[row])
