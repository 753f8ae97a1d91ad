"""Customer purchase sequences as model inputs: left-padded item-index windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.split import ITEM_IDX, PADDING_IDX


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


def next_item_examples(sequences: Sequence[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (preceding window, next item) pair of every sequence: inputs [n, max_len], targets [n]."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    total = int(np.clip(lengths - 1, 0, None).sum())
    inputs = np.full((total, max_len), PADDING_IDX, dtype=np.int64)
    targets = np.empty(total, dtype=np.int64)
    row = 0
    for seq in sequences:
        # position j of the padded sequence holds seq[i - max_len + j] for the example predicting seq[i]
        padded = np.concatenate([np.full(max_len, PADDING_IDX, dtype=np.int64), seq])
        n = len(seq) - 1
        if n <= 0:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(padded, max_len)[1 : n + 1]
        inputs[row : row + n] = windows
        targets[row : row + n] = seq[1:]
        row += n
    return inputs, targets


def sequence_chunks(sequences: Sequence[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence cut from its end into windows: inputs [n, L] and next items [n, L] (0 = no target)."""
    inputs, targets = [], []
    for seq in sequences:
        for end in range(len(seq) - 1, 0, -max_len):
            start = max(0, end - max_len)
            inputs.append(seq[start:end])
            targets.append(seq[start + 1 : end + 1])
    return pad_left(inputs, max_len), pad_left(targets, max_len)
