"""Lightning's advertising and its known-harmless warnings, silenced where mapwise builds a Trainer."""

from __future__ import annotations

import logging
import warnings

_HARMLESS = (
    r".*LeafSpec.*",  # a deprecation inside Lightning itself
    r".*smaller than the logging interval.*",  # small data: fewer batches than log_every_n_steps
    r".*MLFlow only allows.*",  # val_ndcg@10 is logged as val_ndcg10
    r".*`weights_only` was not set.*",  # reloading the best of our own checkpoints
)
_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Drop Lightning's "Tip" lines and the warnings above for the rest of the process (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())
    for pattern in _HARMLESS:
        warnings.filterwarnings("ignore", pattern)
