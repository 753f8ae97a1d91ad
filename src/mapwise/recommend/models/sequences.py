"""Customer purchase sequences as model inputs: left-padded item-index windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.recommend.split import PADDING_IDX
from mapwise.columns import ITEM_IDX


def customer_sequences(train: pl.DataFrame) -> list[np.ndarray]:
    """Each training customer's purchased item indices in time order (customers sorted by id)."""
    grouped = train.group_by(c.CUSTOMER_ID, maintain_order=True).agg(pl.col(ITEM_IDX)).sort(c.CUSTOMER_ID)
    return [np.asarray(s, dtype=np.int64) for s in grouped[ITEM_IDX].to_list()]


def pad_left(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """The last `max_len` items of each sequence, left-padded with PADDING_IDX: int64 [n, max_len]."""
    out = np.full((len(sequences), max_len), PADDING_IDX, dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq[-max_len:], dtype=np.int64)
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return out


def _future(seq: np.ndarray, first: int, last: int, horizon: int) -> np.ndarray:
    """Items after positions first..last-1: row j holds seq[j + 1 : j + 1 + horizon], 0-padded past the end."""
    padded = np.concatenate([seq, np.full(horizon, PADDING_IDX, dtype=np.int64)])
    return np.lib.stride_tricks.sliding_window_view(padded[first + 1 :], horizon)[: last - first]


def next_item_examples(sequences: Sequence[np.ndarray], max_len: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every (preceding window, items that follow) pair: inputs [n, max_len], futures [n, horizon] (0 = none)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    total = int(np.clip(lengths - 1, 0, None).sum())
    inputs = np.full((total, max_len), PADDING_IDX, dtype=np.int64)
    futures = np.empty((total, horizon), dtype=np.int64)
    row = 0
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        # position j of the padded sequence holds seq[i - max_len + j] for the example predicting seq[i]
        padded = np.concatenate([np.full(max_len, PADDING_IDX, dtype=np.int64), seq])
        n = len(seq) - 1
        if n <= 0:
            continue
        inputs[row : row + n] = np.lib.stride_tricks.sliding_window_view(padded, max_len)[1 : n + 1]
        futures[row : row + n] = _future(seq, 0, n, horizon)
        row += n
    return inputs, futures


def sequence_chunks(sequences: Sequence[np.ndarray], max_len: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence cut from its end into windows: inputs [n, L] and what follows them [n, L + horizon - 1].

    following[w, t + j] is the (j + 1)-th item after position t (0 = none): the next items are
    following[:, :L], and position t's horizon is following[w, t : t + horizon].
    """
    inputs, following = [], []
    width = max_len + horizon - 1
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for end in range(len(seq) - 1, 0, -max_len):
            start = max(0, end - max_len)
            inputs.append(seq[start:end])
            following.append(seq[start + 1 : end + horizon])
    out = np.full((len(following), width), PADDING_IDX, dtype=np.int64)
    for row, (window, after) in enumerate(zip(inputs, following, strict=True)):
        offset = max_len - len(window)
        out[row, offset : offset + len(after)] = after
    return pad_left(inputs, max_len), out
