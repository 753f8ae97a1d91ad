"""A LightGBM model as torch tensors: every tree walked in parallel with gathers, so it exports to ONNX.

Each tree is a table of nodes (feature, threshold, left, right, value); a leaf points to itself, so
walking `depth` steps from the root ends on every row's leaf. The sum of the leaves is LightGBM's raw
score. Inputs are compared in float64 against LightGBM's float64 thresholds (`x <= threshold` goes
left), as LightGBM itself does; numerical splits only (the ranker's features are all numbers).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _flatten(tree: dict) -> list[dict]:
    """A dumped tree's nodes in a list, children referenced by index (root first)."""
    nodes: list[dict] = []

    def visit(node: dict) -> int:
        index = len(nodes)
        nodes.append({})
        if "leaf_value" in node:
            nodes[index] = {"feature": 0, "threshold": np.inf, "left": index, "right": index, "value": node["leaf_value"]}
            return index
        if node.get("decision_type", "<=") != "<=":
            raise ValueError(f"unsupported split {node.get('decision_type')!r}: numerical splits only")
        entry = {"feature": node["split_feature"], "threshold": float(node["threshold"]), "value": 0.0}
        entry["left"] = visit(node["left_child"])
        entry["right"] = visit(node["right_child"])
        nodes[index] = entry
        return index

    visit(tree["tree_structure"])
    return nodes


def tree_tables(dump: dict) -> dict[str, torch.Tensor]:
    """`Booster.dump_model()` as padded tables [trees, nodes]: feature, threshold, left, right, value; and depth."""
    trees = [_flatten(t) for t in dump["tree_info"]]
    if not trees:
        raise ValueError("the LightGBM model has no trees")
    width = max(len(t) for t in trees)
    tables = {key: np.zeros((len(trees), width), dtype=np.float64 if key in ("threshold", "value") else np.int64)
              for key in ("feature", "threshold", "left", "right", "value")}
    for row, nodes in enumerate(trees):
        for col, node in enumerate(nodes):
            for key in tables:
                tables[key][row, col] = node[key]
    out = {key: torch.from_numpy(value) for key, value in tables.items()}
    out["depth"] = torch.tensor(_depth(dump), dtype=torch.int64)
    return out


def _depth(dump: dict) -> int:
    def depth(node: dict) -> int:
        return 0 if "leaf_value" in node else 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    return max(depth(t["tree_structure"]) for t in dump["tree_info"])


class TreeEnsemble(nn.Module):
    """rows [R, F] float32 -> [R] float32: the sum over trees of the leaf each row reaches."""

    def __init__(self, tables: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for key, value in tables.items():
            self.register_buffer(key, value)
        self.steps = int(tables["depth"])
        self.width = int(tables["feature"].shape[1])

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        n_trees = self.feature.shape[0]
        x = rows.to(torch.float64)
        offset = (torch.arange(n_trees) * self.width).unsqueeze(0)  # [1, T]: where each tree's nodes start
        feature, threshold = self.feature.reshape(-1), self.threshold.reshape(-1)
        left, right = self.left.reshape(-1), self.right.reshape(-1)
        node = torch.zeros(rows.shape[0], n_trees, dtype=torch.int64)
        for _ in range(self.steps):
            at = node + offset
            value = torch.gather(x, 1, feature[at])
            node = torch.where(value <= threshold[at], left[at], right[at])
        return self.value.reshape(-1)[node + offset].sum(dim=1).to(torch.float32)
