"""YAML from outside (mappings, params, overrides), read within bounds: its size, how deep it nests, and how many
values it stands for once aliases are expanded. Beyond one, the error is one line naming the file and the bound,
before any parser recursion or expansion can crash or exhaust the process."""

from __future__ import annotations

from pathlib import Path

import yaml

from mapwise.errors import MapwiseError, yaml_problem

MAX_BYTES = 1 << 20  # a mapping or params file is a few KiB; 1 MiB is far beyond any real one
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_VALUES = 100_000  # values the document holds with every alias expanded (a "billion laughs" holds 10^9)


def read_yaml(path: Path, what: str = "", *, max_bytes: int = MAX_BYTES) -> object:
    """The YAML file at `path` (`what` it holds, for messages), parsed within the bounds; MapwiseError naming the
    file otherwise."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise MapwiseError(f"{path}: cannot read {what + ' ' if what else ''}({err.strerror})") from None
    if len(data) > max_bytes:
        raise MapwiseError(f"{path}: larger than {max_bytes // 1024:,} KiB, the most a YAML file here may be")
    return load_yaml(data, str(path))


def load_yaml(text: str | bytes, origin: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> object:
    """`text` parsed as YAML (safe types only) if it nests at most `max_depth` deep and holds at most `max_values`
    values with aliases expanded; MapwiseError naming `origin` otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MapwiseError(f"{origin}: not UTF-8 (byte {err.start})") from None
    try:
        _check_shape(text, origin, max_depth, max_values)
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise MapwiseError(f"{origin}: {yaml_problem(err)}") from None
    except RecursionError:  # a bound above should have caught it first
        raise MapwiseError(f"{origin}: nested too deeply") from None


def _check_shape(text: str, origin: str, max_depth: int, max_values: int) -> None:
    """Walk the parser's events (no recursion): the depth, and the values each anchor and the document stand for."""
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    stack: list[list] = [[None, 0]]  # [anchor, values so far] per open collection
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([event.anchor, 0])
            if len(stack) - 1 > max_depth:
                raise MapwiseError(f"{origin}: nested more than {max_depth} levels deep (line {event.start_mark.line + 1})")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, count = stack.pop()
            _add(stack, sizes, anchor, count + 1, origin, max_values, event)
        elif isinstance(event, yaml.ScalarEvent):
            _add(stack, sizes, event.anchor, 1, origin, max_values, event)
        elif isinstance(event, yaml.AliasEvent):
            _add(stack, sizes, None, sizes.get(event.anchor, 1), origin, max_values, event)


def _add(stack: list[list], sizes: dict[str, int], anchor: str | None, count: int, origin: str, max_values: int,
         event: yaml.Event) -> None:
    if anchor is not None:
        sizes[anchor] = count
    stack[-1][1] += count
    if stack[-1][1] > max_values:
        raise MapwiseError(f"{origin}: stands for more than {max_values:,} values once its aliases are expanded "
                           f"(line {event.start_mark.line + 1})")
