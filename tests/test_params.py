import shutil
from pathlib import Path

import pytest
import yaml

from mapwise.errors import MapwiseError
from mapwise.params import load_params, parse_params

from conftest import REPO


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.ingest.sources == ["online_retail", "hillstrom", "bank_marketing", "online_shoppers"]
    for name in params.ingest.sources:
        assert (REPO / params.ingest.mappings_dir / f"{name}.yaml").exists()


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_unknown_key_is_named():
    data = _params()
    data["ingest"]["raw_dirr"] = "x"
    with pytest.raises(MapwiseError, match=r"^params.yaml: ingest.raw_dirr: unknown key \(did you mean 'raw_dir'\?\)$"):
        parse_params(data)


def test_wrong_type_is_named():
    data = _params()
    data["ingest"]["sources"] = "online_retail"
    with pytest.raises(MapwiseError, match=r"ingest.sources: Input should be a valid list"):
        parse_params(data)


def test_unknown_section_is_named():
    with pytest.raises(MapwiseError, match=r"trainn: unknown key"):
        parse_params({**_params(), "trainn": {}})


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(MapwiseError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(MapwiseError, match="invalid YAML"):
        load_params(bad)


def test_overrides_set_dotted_keys_and_are_validated():
    from mapwise.params import with_overrides

    data = _params()
    merged = with_overrides(data, {"train.max_epochs": 3, "train.model.embedding_dim": 32, "train.models": ["gru"]})
    assert (merged["train"]["max_epochs"], merged["train"]["model"]["embedding_dim"], merged["train"]["models"]) == (3, 32, ["gru"])
    assert data["train"]["max_epochs"] == 200, "the input is not changed"
    with pytest.raises(MapwiseError, match=r"^overrides: train.max_epochz: unknown key \(did you mean 'max_epochs'\?\)$"):
        with_overrides(data, {"train.max_epochz": 3})
    with pytest.raises(MapwiseError, match=r"^overrides: train.max_epochs: Input should be greater than or equal to 1$"):
        with_overrides(data, {"train.max_epochs": 0})
    with pytest.raises(MapwiseError, match=r"'train.lr.x': train.lr is a value, not a section"):
        with_overrides(data, {"train.lr.x": 1})


def test_overridden_params_and_kept_paths_come_back_byte_for_byte(tmp_path: Path):
    from mapwise.overrides import backup_dir, params_overridden, restore_interrupted

    path = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_bytes()
    path.write_bytes(original)
    lock, reports, new = tmp_path / "dvc.lock", tmp_path / "reports", tmp_path / "new.json"
    lock.write_text("before\n")
    (reports / "plots").mkdir(parents=True)
    (reports / "plots" / "a.csv").write_text("a\n")
    keep = [lock, reports, new]

    def run_changes_them():
        lock.write_text("after\n")
        shutil.rmtree(reports / "plots")
        (reports / "b.json").write_text("{}")
        new.write_text("{}")

    with params_overridden(path, {"train.max_epochs": 3}, keep) as params:
        assert params.train.max_epochs == 3
        assert load_params(path).train.max_epochs == 3, "stages read the overridden file while the run lasts"
        run_changes_them()
    assert path.read_bytes() == original and not backup_dir(path).exists()
    assert lock.read_text() == "before\n" and not new.exists()
    assert sorted(p.name for p in reports.rglob("*")) == ["a.csv", "plots"]
    with pytest.raises(RuntimeError), params_overridden(path, {"train.max_epochs": 3}, keep):
        run_changes_them()
        raise RuntimeError("a stage failed")
    assert path.read_bytes() == original and lock.read_text() == "before\n" and not new.exists()
    with pytest.raises(MapwiseError, match="unknown key"), params_overridden(path, {"train.nope": 1}, keep):
        pass
    assert path.read_bytes() == original and not backup_dir(path).exists()
    with params_overridden(path, {}, keep):
        lock.write_text("a run without overrides keeps what it made\n")
    assert lock.read_text() == "a run without overrides keeps what it made\n"
    lock.write_text("before\n")
    # a run killed half-way leaves the overridden files and the copy: the next run restores them first
    with pytest.raises(KeyboardInterrupt), params_overridden(path, {"train.max_epochs": 3}, keep):
        run_changes_them()
        shutil.copytree(backup_dir(path), tmp_path / "left")
        raise KeyboardInterrupt
    shutil.copytree(tmp_path / "left", backup_dir(path))
    run_changes_them()
    path.write_text("train: {max_epochs: 3}\n")
    assert restore_interrupted(path) and path.read_bytes() == original and not restore_interrupted(path)
    assert lock.read_text() == "before\n" and not new.exists() and (reports / "plots" / "a.csv").exists()
    (backup_dir(path) / "0-params.yaml").parent.mkdir(parents=True)
    (backup_dir(path) / "0-params.yaml").write_text("a copy killed before its manifest\n")
    assert not restore_interrupted(path) and path.read_bytes() == original and not backup_dir(path).exists()


def test_outputs_are_put_back_when_a_stage_is_stopped_not_when_it_fails(tmp_path: Path):
    from mapwise.overrides import restored_if_stopped

    report, plots, copy = tmp_path / "train.json", tmp_path / "plots", tmp_path / ".copy"
    report.write_text("before")
    (plots / "a.csv").parent.mkdir()
    (plots / "a.csv").write_text("a")

    def dvc_deletes_them():
        report.unlink()
        shutil.rmtree(plots)

    with pytest.raises(KeyboardInterrupt), restored_if_stopped([report, plots], copy):
        dvc_deletes_them()
        raise KeyboardInterrupt  # a cancel
    assert report.read_text() == "before" and (plots / "a.csv").read_text() == "a" and not copy.exists()
    with pytest.raises(RuntimeError), restored_if_stopped([report, plots], copy):
        dvc_deletes_them()
        raise RuntimeError("the stage failed: DVC's state stands, and the next run re-runs it")
    assert not report.exists() and not plots.exists() and not copy.exists()
