"""Read and validate a mapping file: its keys (spec), its expressions, and the types they apply to (apply)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from mapwise.bounded_yaml import read_yaml
from mapwise.errors import MapwiseError, describe
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
    mapping = parse_mapping(read_yaml(path, "mapping"), str(path))
    if mapping.name != path.stem:
        raise MapwiseError(f"{path}: name '{mapping.name}' must match the file name '{path.stem}'")
    return mapping
