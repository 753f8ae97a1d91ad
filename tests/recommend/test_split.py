from datetime import UTC, datetime, timedelta

import polars as pl

from mapwise import columns as c
from mapwise.sources.contracts import UTC_TIMESTAMP
from mapwise.recommend.split import leave_last_out_split, temporal_split

T = datetime(2024, 3, 1, tzinfo=UTC)


def _events(rows: list[tuple[str, str, int, str]]) -> pl.DataFrame:
    """(customer, item, days relative to T, event type)."""
    return pl.DataFrame(
        {
            c.CUSTOMER_ID: [r[0] for r in rows],
            c.ITEM_ID: [r[1] for r in rows],
            c.TIMESTAMP: [T + timedelta(days=r[2]) for r in rows],
            c.EVENT_TYPE: [r[3] for r in rows],
        },
        schema_overrides={c.TIMESTAMP: UTC_TIMESTAMP},
    )


ROWS = [
    ("a", "x", -40, "purchase"), ("a", "y", -35, "purchase"), ("a", "y", -33, "purchase"),
    ("a", "z", -5, "purchase"),                      # validation window
    ("a", "x", 3, "purchase"), ("a", "new", 4, "purchase"),  # test window, one unknown item
    ("b", "y", -50, "purchase"), ("b", "x", -49, "return"),
    ("b", "y", 10, "purchase"),
    ("c", "z", -20, "purchase"),                    # history of unknown items only: not evaluated
    ("c", "x", 5, "purchase"),
]


def _split(rows=ROWS):
    return temporal_split(_events(rows), cutoff=T, validation_days=30, horizon_days=30, min_history=1)


def test_temporal_split_windows():
    s = _split()
    assert s.items.rows() == [(1, "y", 3), (2, "x", 1)]  # training only, most bought first
    assert s.train[c.CUSTOMER_ID].to_list() == ["b", "a", "a", "a"]  # time order
    assert s.train["item_idx"].to_list() == [1, 2, 1, 1]
    assert s.valid.height == 0  # a's only validation purchase (z) is unknown to training: nothing to score
    assert s.test.rows() == [("a", [2, 1, 1], [2], 1), ("b", [1], [1], 0)]


def test_nothing_from_later_windows_leaks():
    base = _split()
    later = [*ROWS, ("a", "q", 1, "purchase"), ("d", "x", 6, "purchase"), ("b", "w", -2, "purchase")]
    moved = _split(later)
    assert moved.items.equals(base.items)
    assert moved.train.equals(base.train)
    changed = [(cu, it, d + 60 if d >= 0 else d, ev) for cu, it, d, ev in ROWS]
    assert _split(changed).train.equals(base.train) and _split(changed).items.equals(base.items)


def test_leave_last_out():
    rows = [("a", "x", 1, "purchase"), ("a", "y", 2, "purchase"), ("a", "z", 3, "purchase"), ("a", "x", 4, "purchase"),
            ("b", "x", 1, "purchase"), ("b", "y", 2, "purchase")]
    s = leave_last_out_split(_events(rows), min_history=1)
    assert s.items["item_id"].to_list() == ["x", "y"]
    assert s.valid.height == 0  # a's validation target z is unknown to training
    assert s.test.rows() == [("a", [1, 2], [1], 0)]
