"""`Overrides`: the typed run form derived from Params, its dotted input and output, and the schema Prefect builds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conftest import REPO
from mapwise.errors import describe
from mapwise.overridable import Overrides
from mapwise.params import Params, parse_params, read_params, with_overrides

SCHEMA = Overrides.model_json_schema()


def _field(schema: dict, section: str, name: str, defs: str = "$defs") -> dict:
    """A field of a section in a JSON schema: {"minimum": 1, "type": "integer"...}."""
    ref = schema["properties"][section]["$ref"]
    return schema[defs][ref.rsplit("/", 1)[1]]["properties"][name]


def test_every_section_the_pipeline_reads_but_where_things_live_or_run():
    assert set(SCHEMA["properties"]) == set(Params.model_fields) - {"orchestrate", "tracking", "serve", "tune", "score"}


def test_the_form_has_plain_inputs_without_defaults_so_an_empty_field_is_not_sent():
    """A null default would make Prefect's form send null for every field left empty, and fail its own schema check."""
    for name, definition in SCHEMA["$defs"].items():
        for field, spec in definition["properties"].items():
            assert "default" not in spec, f"{name}.{field}"
    assert all("default" not in spec and "$ref" in spec for spec in SCHEMA["properties"].values())


def test_path_fields_are_left_out():
    train = SCHEMA["$defs"]["TrainParamsOverrides"]["properties"]
    assert "max_epochs" in train and "out_dir" not in train and "report" not in train
    ingest = set(SCHEMA["$defs"]["IngestParamsOverrides"]["properties"])
    assert ingest == {"sources", "max_file_mb", "chunk_mb", "future_tolerance_days", "min_timestamp"}  # no raw_dir, trusted_dirs; no engine, dask


def test_fields_keep_description_bounds_and_choices():
    epochs = {"type": "integer", "minimum": 1, "title": "Max Epochs",
              "description": "the budget: passes over the training windows"}
    assert _field(SCHEMA, "train", "max_epochs") == epochs
    patience = _field(SCHEMA, "train", "patience")
    assert patience["minimum"] == 1 and patience["description"] == "validations without validation NDCG gain before stopping (a plateau)"
    assert _field(SCHEMA, "export", "min_top10_agreement")["exclusiveMinimum"] == 0
    assert _field(SCHEMA, "export", "min_top10_agreement")["maximum"] == 1
    assert _field(SCHEMA, "split", "method")["enum"] == ["temporal", "leave_last_out"]
    assert _field(SCHEMA, "train", "models")["items"]["enum"] == ["gru", "caser", "sasrec", "repeatnet", "ranker"]
    assert _field(SCHEMA, "train", "models")["minItems"] == 1
    assert SCHEMA["$defs"]["SplitParamsOverrides"]["description"] == Params.model_fields["split"].annotation.__doc__
    dropout = SCHEMA["$defs"]["ModelParamsOverrides"]["properties"]["dropout"]
    assert (dropout["type"], dropout["minimum"], dropout["exclusiveMaximum"]) == ("number", 0, 1)  # train.model: field by field


def test_dotted_and_nested_input_give_the_same_overrides():
    method = "leave_last_out"
    dotted = Overrides.model_validate({"train.max_epochs": 3, "train.model.max_len": 5, "split.method": method})
    nested = Overrides(train={"max_epochs": 3, "model": {"max_len": 5}}, split={"method": method})
    mixed = Overrides.model_validate({"train.model.max_len": 5, "train": {"max_epochs": 3}, "split.method": method})
    expected = {"split.method": "leave_last_out", "train.model.max_len": 5, "train.max_epochs": 3}
    assert dotted.dotted() == nested.dotted() == mixed.dotted() == expected


def test_unset_and_none_are_left_as_in_params_yaml():
    assert Overrides().dotted() == {}
    ui = {"train": {"max_epochs": None, "lr": 0.01, "model": {"max_len": None}}, "split": None, "promote": {}}  # a form
    assert Overrides.model_validate(ui).dotted() == {"train.lr": 0.01}


def test_values_come_out_as_plain_data():
    done = Overrides.model_validate({"split.cutoff": "2011-10-01T00:00:00Z", "evaluate.ks": (5, 10)})
    assert done.dotted() == {"split.cutoff": "2011-10-01T00:00:00Z", "evaluate.ks": [5, 10]}


@pytest.mark.parametrize(("given", "named"), [
    ({"train.max_epoch": 3}, "train.max_epoch: unknown key"),
    ({"trian.max_epochs": 3}, "trian: unknown key"),
    ({"train": {"max_epoch": 3}}, "train.max_epoch: unknown key"),
    ({"train.out_dir": "elsewhere"}, "train.out_dir: unknown key"),
    ({"serve.port": 1}, "serve: unknown key"),
    ({"tune.trials": 1}, "tune: unknown key"),
    ({"train.max_epochs": 0}, "train.max_epochs: Input should be greater than or equal to 1"),
    ({"split.method": "random"}, "split.method: Input should be 'temporal' or 'leave_last_out'"),
    ({"train": 3, "train.lr": 1}, "'train.lr': train is a value, not a section"),
])
def test_unknown_keys_and_bad_values_are_named(given, named):
    with pytest.raises(ValidationError) as err:
        Overrides.model_validate(given)
    assert named in describe(err.value)


def test_prefect_builds_a_form_from_it():
    from prefect.utilities.callables import parameter_schema

    def f(overrides: Overrides | None = None): ...

    schema = parameter_schema(f).model_dump()
    top = next(x["$ref"] for x in schema["properties"]["overrides"]["anyOf"] if "$ref" in x)
    form = schema["definitions"][top.rsplit("/", 1)[1]]
    epochs = _field({**form, "definitions": schema["definitions"]}, "train", "max_epochs", defs="definitions")
    assert epochs["minimum"] == 1 and epochs["type"] == "integer"
    patience = _field({**form, "definitions": schema["definitions"]}, "train", "patience", defs="definitions")
    assert patience["description"] == "validations without validation NDCG gain before stopping (a plateau)"


def test_applies_to_the_repository_params():
    merged = with_overrides(read_params(REPO / "params.yaml"), Overrides(train={"max_epochs": 2}).dotted())
    assert parse_params(merged).train.max_epochs == 2


def _properties(schema: dict) -> list[tuple[str, dict]]:
    """Every field of the form's schema, nested sections included, as (name, property)."""
    out = []
    for definition in [schema, *schema.get("$defs", {}).values()]:
        out += list(definition.get("properties", {}).items())
    return out


def test_the_run_form_sends_only_what_was_changed():
    """Prefect's form shows a boolean as a toggle, off when untouched, and submits false (seen in the UI: only
    promote.margin set, and train.refit and propensity.calibrate went along as false). A yes/no setting is a
    choice of true, false or nothing; nothing is null, which changes nothing."""
    fields = _properties(Overrides.model_json_schema())
    assert not [name for name, prop in fields if prop.get("type") == "boolean"]
    assert dict(fields)["refit"]["enum"] == [True, False, None] and dict(fields)["calibrate"]["enum"] == [True, False, None]
    untouched = {"train": {"refit": None, "lr": None}, "propensity": {"calibrate": None}, "promote": {"margin": 0.002}}
    assert Overrides.model_validate(untouched).dotted() == {"promote.margin": 0.002}
    assert Overrides.model_validate({"train": {"refit": False}}).dotted() == {"train.refit": False}


def test_the_form_keeps_names_in_angle_brackets():
    described = [prop["description"] for _, prop in _properties(Overrides.model_json_schema()) if "description" in prop]
    assert not [d for d in described if "<" in d or ">" in d]  # Markdown would take <name> for a tag and drop it
    assert any("&lt;name&gt;" in d for d in described)
