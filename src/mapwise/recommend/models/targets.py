"""Training examples as torch data: windows and what follows them, targets drawn per batch."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mapwise.recommend.split import PADDING_IDX


def draw_targets(futures: torch.Tensor) -> torch.Tensor:
    """One target per example (and position): an item drawn uniformly from those that follow within the horizon.

    futures [..., horizon], each row's items first and padding after; a row of padding gives PADDING_IDX.
    With horizon 1 this is the next item. With more, it is PinnerFormer's dense all-action objective
    (Pancha et al., KDD 2022): the model learns what a customer buys over the coming purchases, not
    only in which order, a fresh draw every time the example is seen.
    """
    available = (futures != PADDING_IDX).sum(-1, keepdim=True)
    pick = (torch.rand(available.shape) * available).long().clamp_max(futures.shape[-1] - 1)
    return futures.gather(-1, pick).squeeze(-1)


class NextItems(Dataset):
    """Training examples: input windows and the items that follow; `collate` draws the targets of a batch.

    From `sequence_chunks` (`every_position`): targets [B, L], PADDING_IDX where the input is padding;
    from `next_item_examples`: targets [B].
    """

    def __init__(self, inputs: np.ndarray, following: np.ndarray, horizon: int, every_position: bool) -> None:
        self.inputs, self.following = torch.from_numpy(inputs), torch.from_numpy(following)
        self.horizon, self.every_position = horizon, every_position

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.following[index]

    def collate(self, batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, following = (torch.stack(part) for part in zip(*batch, strict=True))
        if not self.every_position:
            return inputs, draw_targets(following)
        targets = draw_targets(following.unfold(1, self.horizon, 1))
        return inputs, targets.masked_fill(inputs == PADDING_IDX, PADDING_IDX)
