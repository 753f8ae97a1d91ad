"""Warm start (issue 16): fine-tune the champion's architecture from its registered weights, item table extended.

Tiny data on the CPU, a few optimizer steps; no timing is asserted.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mapwise.params import ModelParams, Params, read_params, with_overrides
from mapwise.recommend.models.networks import build_network
from mapwise.recommend.network_file import load_network
from mapwise.recommend.models.files import saved_state
from mapwise.recommend.models.warm_start import ITEM_TABLES, extend_item_tables
from mapwise.recommend.split import load_split
from mapwise.bundles.registry import CHAMPION, alias_version, apply, client, register_bundle
from mapwise.bundles.format import NETWORK_FILE


def _params(**changes) -> Params:
    return Params.model_validate(with_overrides(read_params(), changes))


def _champion(params: Params, model: str = "sasrec", folder=None) -> str:
    """Register the exported bundle of `model` and make it the champion (the gate's first decision)."""
    from mapwise.recommend.gate import gate
    from mapwise.recommend.slices import customer_slices

    version, _ = register_bundle(params.tracking, params.register.model_name, folder or params.export.out_dir / model)
    decision = apply(params.tracking, gate(params.tracking, params.register.model_name, load_split(params.split.out_dir),
                                           customer_slices(params), params.promote, params.evaluate, params.serve.cache_dir))
    assert decision.champion_after == version
    return version


def test_extending_the_item_table_keeps_old_items_and_starts_new_ones_at_the_mean():
    p = ModelParams(max_len=6, embedding_dim=8, sasrec_layers=1)
    torch.manual_seed(0)
    old = build_network("sasrec", 3, p).state_dict()
    state, kept, added = extend_item_tables(old, ["a", "b", "c"], ["c", "x", "a", "b", "y"], seed=1)
    assert (kept, added) == (3, 2)
    for key in ITEM_TABLES:
        new, before = state[key], old[key]
        assert new.shape[0] == 6
        assert torch.equal(new[0], before[0])  # padding
        for new_row, old_row in ((1, 3), (3, 1), (4, 2)):  # c, a, b keep their values under their new index
            assert torch.equal(new[new_row], before[old_row])
        mean = before[1:].mean(0)
        for fresh in (2, 5):  # x, y: the mean item, a little noise apart
            assert torch.allclose(new[fresh], mean, atol=0.1 * float(before[1:].std()) + 1e-6)
            if key == "items.weight":  # embeddings vary, so the new rows differ a little (a fresh bias is all zeros)
                assert not torch.equal(new[fresh], new[7 - fresh])
    others = [k for k in old if k not in ITEM_TABLES]
    assert others and all(torch.equal(state[k], old[k]) for k in others)
    build_network("sasrec", 5, p).load_state_dict(state)  # fits a network over the new catalogue


def test_a_warm_started_model_trains_and_is_registered_and_gated_like_any_other(project):
    from pipelines import export, register, train
    from mapwise.recommend.gate import gate
    from mapwise.recommend.slices import customer_slices

    champion = _champion(project)
    assert (project.export.out_dir / "sasrec" / NETWORK_FILE).is_file()  # the export bundles the weights
    name = project.register.model_name
    params = _params(**{"train.models": ["sasrec"], "train.init_from": f"models:/{name}@{CHAMPION}",
                        "train.max_steps": 3, "train.val_every_steps": 1, "train.refit": False})
    start = saved_state(project.train.out_dir / "sasrec.pt")
    train.stage(params)
    report = json.loads(project.train.report.read_text())["sasrec"]
    assert report["init_from"] == f"models:/{name}/{champion}"
    assert report["warm_start"].startswith(f"warm start from models:/{name}/{champion} (sasrec):")
    assert report["steps"] <= 3
    tuned = load_network(project.train.out_dir / "sasrec.pt").state_dict()
    assert set(tuned) == set(start) and any(not torch.equal(tuned[k], start[k]) for k in start)  # it trained

    from pipelines import evaluate

    evaluate.stage(params)
    export.stage(params)
    register.stage(params)
    registered = json.loads(params.register.report.read_text())
    assert registered["model"] == "sasrec" and registered["version"] != champion and registered["created"]
    decision = apply(params.tracking, gate(params.tracking, name, load_split(params.split.out_dir),
                                           customer_slices(params), params.promote, params.evaluate,
                                           params.serve.cache_dir))
    assert decision.challenger == registered["version"] and decision.champion_before == champion
    assert decision.action in ("promote", "refuse") and "ndcg@10 (all_items)" in decision.reason  # judged on test
    assert decision.figures["customers"] > 0


@pytest.mark.parametrize("case", ["no champion", "other architecture", "no weights"])
def test_an_unusable_champion_falls_back_to_training_from_scratch_with_the_reason(project, tmp_path, capsys, case):
    from pipelines.train import warm_start

    name = project.register.model_name
    if case == "other architecture":
        _champion(project, "sasrec")
    elif case == "no weights":  # registered before bundles held the network
        old = shutil.copytree(project.export.out_dir / "gru", tmp_path / "old-gru")
        (old / NETWORK_FILE).unlink()
        _champion(project, "gru", old)
    params = _params(**{"train.models": ["gru"], "train.init_from": f"models:/{name}@{CHAMPION}"})
    init, said = warm_start(params, "gru", load_split(params.split.out_dir))
    assert init is None and said["init_from"] is None
    expected = {"no champion": f"'{name}' has no version with alias 'champion'",
                "other architecture": f"models:/{name}/1 is a sasrec, not a gru: another architecture",
                "no weights": f"models:/{name}/1 holds no network weights"}[case]
    assert said["warm_start"].startswith(expected)
    out = capsys.readouterr().out
    assert f"train gru: from scratch: models:/{name}@champion not used: {expected}" in out


def test_the_retrain_flow_fine_tunes_the_champion_and_trains_all_without_one(project):
    from flows.retrain import warm_start_overrides

    overrides, why = warm_start_overrides(project)
    assert overrides == {} and "no champion yet" in why
    version = _champion(project, "sasrec")
    overrides, why = warm_start_overrides(project)
    w = project.orchestrate.warm_start
    name = project.register.model_name
    assert overrides == {"train.models": ["sasrec"], "train.init_from": f"models:/{name}/{version}",
                         "train.min_steps": 0, "train.max_steps": w.max_steps, "train.val_every_steps": w.val_every_steps,
                         "train.patience": w.patience, "train.warmup_steps": w.warmup_steps}
    assert why.startswith(f"warm start: fine-tuning the champion ({name} version {version}, sasrec)")
    _params(**overrides)  # valid params: the pipeline flow takes them as they are
    off = project.model_copy(update={"orchestrate": project.orchestrate.model_copy(
        update={"warm_start": w.model_copy(update={"enabled": False})})})
    assert warm_start_overrides(off) == ({}, "orchestrate.warm_start.enabled is false: every model trains from scratch")
    assert alias_version(client(project.tracking), name, CHAMPION) == version
