"""Integrated gradients of a torch targeting model, with Captum (the same quantity as
`reasons.numeric_integrated_gradients`, from autograd). torch and captum are imported only inside
``integrated_gradients``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from mapwise.targeting.reasons import broadcast_baseline


def integrated_gradients(
    forward: Callable,
    x: np.ndarray,
    baseline: np.ndarray,
    *,
    extra: Sequence[np.ndarray] = (),
    target: int | None = None,
    steps: int = 32,
) -> np.ndarray:
    """Integrated gradients of ``forward(x, *extra)`` w.r.t. ``x`` via Captum.

    ``x`` is [B, F] and ``baseline`` [F] or [B, F].  ``extra`` arrays are passed
    through unchanged (integers as int64, floats as float32) and receive no
    attributions.  ``target`` picks the output column of a [B, A] model; use
    None for a [B] model.  A module is run in eval mode (its previous mode is
    restored) and no gradients are left on its parameters.  Returns [B, F]
    float64.
    """
    import torch
    from captum.attr import IntegratedGradients

    x, baseline = broadcast_baseline(x, baseline)
    module = forward if isinstance(forward, torch.nn.Module) else None
    device = next(module.parameters(), torch.empty(0)).device if module is not None else torch.device("cpu")

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.int64)
        elif np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float32)
        return torch.as_tensor(a, device=device)

    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        with torch.enable_grad():
            attributions = IntegratedGradients(forward).attribute(
                to_tensor(x),
                baselines=to_tensor(baseline),
                target=target,
                additional_forward_args=tuple(to_tensor(a) for a in extra) or None,
                n_steps=steps,
                method="riemann_middle",
            )
    finally:
        if module is not None:
            module.train(was_training)
    return attributions.detach().cpu().numpy().astype(np.float64)
