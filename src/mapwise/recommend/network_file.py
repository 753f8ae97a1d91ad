"""Any network the train stage saves (a sequence network, the ranker, a servable baseline), loaded for scoring."""

from __future__ import annotations

from pathlib import Path

import torch

from mapwise.params import ModelParams
from mapwise.recommend.models.files import weights_only
from mapwise.recommend.models.networks import SequenceRecommender, build_network
from mapwise.recommend.ranker.network import Ranker
from mapwise.recommend.servable import SERVABLE


def load_network(path: Path) -> SequenceRecommender:
    """A network saved by `models.files.export_network` (or a ranker or servable baseline saved alike), in eval mode on the CPU."""
    fixed = {Ranker.name: Ranker, **SERVABLE}  # built from their saved tensors, not from sizes
    with weights_only(path, "network file"):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        h = saved["hparams"]
        if h["name"] in fixed:
            return fixed[h["name"]].from_saved(h, saved["state_dict"]).eval()
        net = build_network(h["name"], h["n_items"], ModelParams(**h["model"]))
        net.load_state_dict(saved["state_dict"])
    return net.eval()
