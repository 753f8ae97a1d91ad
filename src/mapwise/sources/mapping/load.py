"""Read and validate a mapping file: its keys (spec), its expressions, and the types they apply to (apply)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from mapwise.errors import MapwiseError, describe, yaml_problem
from mapwise.sources.mapping.apply import check_types
from mapwise.sources.mapping.expressions import ExpressionError, compile_expression
from mapwise.sources.mapping.spec import Mapping


def parse_mapping(data: object, origin: str) -> Mapping:
    """Validate a mapping's content; errors name the file and the key."""
    if not isinstance(data, dict):
        raise MapwiseError(f"{origin}: a mapping must be a YAML mapping of keys")
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as err:
        raise MapwiseError(describe(err, Mapping, origin)) from None
    for where, text in mapping.expressions():
        try:
            compile_expression(text)
        except ExpressionError as err:
            raise MapwiseError(f"{origin}: {where}: {err}") from None
    check_types(mapping, origin)
    return mapping


def load_mapping(path: Path) -> Mapping:
    """Read and validate one mapping file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise MapwiseError(f"{path}: cannot read mapping ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise MapwiseError(f"{path}: {yaml_problem(err)}") from None
    mapping = parse_mapping(data, str(path))
    if mapping.name != path.stem:
        raise MapwiseError(f"{path}: name '{mapping.name}' must match the file name '{path.stem}'")
    return mapping
