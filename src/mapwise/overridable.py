"""`Overrides`: what one run of the pipeline may change in params.yaml, as a model derived from `Params`.

A Prefect flow taking `overrides: Overrides | None` gets a run form instead of free JSON: one group per
section, each field with its type, description, bounds and choices. Every field defaults to None, meaning
"as in params.yaml" (so a value cannot be overridden *to* null); `dotted()` gives what was set, in the
form `mapwise.params.with_overrides` takes. Where things live or run is not a per-run choice: the
sections and fields of `NOT_OVERRIDABLE` (`orchestrate`, `tracking`, `serve`, `ingest.engine`...), every
field whose type involves a `Path` and mappings (`train.per_model`) are left out.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from mapwise.params import Params

# Dotted names: not pipeline stages, or where a stage runs rather than what it computes.
NOT_OVERRIDABLE = frozenset({"orchestrate", "tracking", "serve", "tune", "score", "ingest.engine", "ingest.dask"})


def _set(data: Any) -> Any:
    """What a form or caller set: None means "as in params.yaml", so it is dropped."""
    return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class _Part(BaseModel):
    """A section of overrides, or a section within one (`train.model`)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_unset(cls, data: Any) -> Any:
        return _set(data)


def _mentions_path(annotation: Any) -> bool:
    """True when the type is, or contains, a Path (`Path`, `list[Path]`, `Path | None`...)."""
    return annotation is Path or any(_mentions_path(arg) for arg in get_args(annotation))


def _optional(field: FieldInfo, path: str) -> tuple[Any, FieldInfo]:
    """The field at dotted `path` made optional (default None), keeping its description, bounds and choices; a
    section recurses."""
    kind, description = field.annotation, field.description
    sections = [a for a in get_args(kind) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(sections) == 1 and type(None) in get_args(kind):  # an optional section (`propensity`): as the section
        kind = sections[0]
    if isinstance(kind, type) and issubclass(kind, BaseModel):  # a section (or train.model): its fields one by one
        kind, description = _all_optional(kind, f"{path}."), description or kind.__doc__
    bounded = Annotated[kind, *field.metadata] if field.metadata else kind  # ge, lt, min_length...: on the value
    shown = _form_text(description) if description else description
    return bounded, Field(None, description=shown, json_schema_extra=_three_way if kind is bool else _no_default)


def _no_default(schema: dict[str, Any]) -> None:
    """No default in the form's schema: a field left empty is then not sent (a null default would be, and fail)."""
    schema.pop("default", None)


def _three_way(schema: dict[str, Any]) -> None:
    """A yes/no setting as a choice of true, false or nothing: Prefect's form shows a boolean as a toggle, which is
    off when untouched and sends `false`; a choice left empty sends null, which means "as in params.yaml"."""
    _no_default(schema)
    schema.pop("type", None)
    schema["enum"] = [True, False, None]


def _form_text(text: str) -> str:
    """A description as the form shows it: its Markdown would take `<name>` for an HTML tag and drop it."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _all_optional(model: type[BaseModel], prefix: str) -> type[BaseModel]:
    """`<Model>Overrides`: the model's fields not involving a Path, each optional; its docstring as description.

    Mappings (`train.per_model`) are left out too: a form has plain inputs only.
    """
    fields = {name: _optional(f, prefix + name) for name, f in model.model_fields.items()
              if prefix + name not in NOT_OVERRIDABLE and not _mentions_path(f.annotation)
              and get_origin(f.annotation) is not dict}
    return create_model(f"{model.__name__}Overrides", __base__=_Part, __doc__=model.__doc__, **fields)


class _Base(BaseModel):
    """Params to change for this run only; what is left empty stays as in params.yaml."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _nest_dotted(cls, data: Any) -> Any:
        """Accept `{"train.max_epochs": 3}` (what --set gives) as a nested dict; None values are not set."""
        data = _set(data)
        if not isinstance(data, dict) or not any(isinstance(k, str) and "." in k for k in data):
            return data
        nested: dict[str, Any] = {}
        for key, value in sorted(data.items(), key=lambda kv: str(kv[0]).count(".")):  # "train" before "train.lr"
            *parents, leaf = str(key).split(".")
            node = nested
            for i, part in enumerate(parents):
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"'{key}': {'.'.join(parents[: i + 1])} is a value, not a section")
            node[leaf] = copy.deepcopy(value)
        return nested

    def dotted(self) -> dict[str, Any]:
        """The values set, and not None, as JSON-ready `{"train.max_epochs": 3}` for `with_overrides`."""

        def flatten(model: BaseModel, prefix: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name in type(model).model_fields:
                value = getattr(model, name)
                if name not in model.model_fields_set or value is None:
                    continue
                if isinstance(value, _Part):
                    out |= flatten(value, f"{prefix}{name}.")
                else:
                    out[f"{prefix}{name}"] = to_jsonable_python(value)
            return out

        return flatten(self, "")


with warnings.catch_warnings():  # the `register` section shadows pydantic's (ABC) classmethod `register`: harmless
    warnings.filterwarnings("ignore", message='Field name "register"')
    Overrides = create_model("Overrides", __base__=_Base, __doc__=_Base.__doc__, **{
        name: _optional(field, name) for name, field in Params.model_fields.items() if name not in NOT_OVERRIDABLE})
