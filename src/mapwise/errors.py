"""The one error type that reaches users: a one-line message, never a traceback."""

from __future__ import annotations

import difflib
import re
from collections import abc
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

MAX_MESSAGE = 1000  # characters of an error message; whatever a message echoes stays a preview


def preview(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, saying how long it was: what errors, reasons and logs echo."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def one_line(text: str, limit: int = 80) -> str:
    """`text` for a one-line message: whitespace collapsed, unprintables escaped, then a `preview`."""
    flat = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in " ".join(text.split()))
    return preview(flat, limit)


def engine_problem(err: BaseException, limit: int = 160) -> str:
    """The first line of a data engine's error (polars, pyarrow) without the values it quotes.

    Engines list offending values (`... for 2 out of 2 values: [{null,"17850.0"}, ...]`), and a value may be a raw
    customer id: a message keeps what failed and where, never the data, as quarantine keeps raw ids out.
    """
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return one_line(_VALUES.sub(r"\1 (not shown)", lines[0]), limit)


_VALUES = re.compile(r"(?i)(values?|value\(s\))\s*:?\s*\[.*")  # a quoted list of values, to the end of the line


class MapwiseError(Exception):
    """A user mistake or unreadable input, told in one line that names the file and the problem
    (invalid params or mappings: one line per problem, see `describe`)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(preview(str(message), MAX_MESSAGE))


def describe(err: ValidationError, model: type[BaseModel] | None = None, origin: str | None = None) -> str:
    """Every problem of a pydantic error, one per line, as 'dotted.key: problem'.

    With the validated `model`, an unknown key gets a "did you mean 'x'?" when a key valid at that place
    is close. With `origin` (a file name), it leads the message. One problem gives one line, as before.
    """
    lines: list[str] = []
    arms: dict[str, int] = {}  # place -> index in `lines` of its "Input should be ..." problem
    for error in err.errors():
        where, fields = _place(model, error["loc"], error["type"] == "extra_forbidden")
        place = ".".join(where) or "(top level)"
        if error["type"] == "extra_forbidden":
            leaf = str(error["loc"][-1]) if error["loc"] else ""
            close = difflib.get_close_matches(leaf, sorted(fields), n=1, cutoff=0.6)
            msg = "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")
        else:
            msg = error["msg"].removeprefix("Value error, ")
        if msg.startswith(_ALTERNATIVE) and place in arms:  # one problem per arm of `str | list[str]`: one line
            lines[arms[place]] += f" or {msg.removeprefix(_ALTERNATIVE)}"
            continue
        if msg.startswith(_ALTERNATIVE):
            arms[place] = len(lines)
        lines.append(f"{place}: {msg}")
    lead = f"{origin}: " if origin else ""
    if len(lines) == 1:
        return lead + lines[0]
    shown: list[str] = []
    room = MAX_MESSAGE - len(lead) - 60  # problems listed while they fit in a message; the rest are counted
    for line in lines:
        room -= len(item := f"  - {one_line(line, 200)}") + 1
        if room < 0 and shown:
            break
        shown.append(item)
    more = [f"  ... and {len(lines) - len(shown)} more"] if len(shown) < len(lines) else []
    return "\n".join([f"{lead}{len(lines)} problems:", *shown, *more])


_ALTERNATIVE = "Input should be "


def _arms(annotation: Any) -> list[Any]:
    """The types an annotation allows, Annotated and None taken off."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        return [arm for a in get_args(annotation) if a is not type(None) for arm in _arms(a)]
    return [annotation]


def _place(model: type[BaseModel] | None, loc: tuple, unknown: bool) -> tuple[list[str], set[str]]:
    """`loc` as shown (the union arms pydantic names left out) and the keys valid beside its last part.

    `unknown`: the last part is an unknown key, never a union arm.
    """
    where: list[str] = []
    current: list[Any] = [model] if model is not None else []
    beside: list[Any] = []
    for depth, part in enumerate(loc):
        arms = [arm for t in current for arm in _arms(t)]
        key_or_arm = not (unknown and depth == len(loc) - 1)
        if key_or_arm and len(arms) > 1 and isinstance(part, str) and not any(_step(arm, part) for arm in arms):
            continue  # pydantic names the arm of a union it tried: not a key of the file
        where.append(str(part))
        beside, current = arms, [nxt for arm in arms for nxt in _step(arm, part)]
    models = [arm for arm in beside if isinstance(arm, type) and issubclass(arm, BaseModel)]
    return where, {name for m in models for name in m.model_fields}


def _step(arm: Any, part: object) -> list[Any]:
    """The types found one step into `arm` at key or index `part`."""
    if isinstance(arm, type) and issubclass(arm, BaseModel):
        field = arm.model_fields.get(str(part))
        return [field.annotation] if field is not None else []
    origin, args = get_origin(arm), get_args(arm)
    if origin in (dict, abc.Mapping) and len(args) == 2 and isinstance(part, str):
        return [args[1]]
    if origin in (list, tuple, set, frozenset, abc.Sequence) and args and isinstance(part, int):
        return [args[0]]
    return []


_YAML_HINTS = {  # part of PyYAML's problem -> what usually causes it
    "mapping values are not allowed here": "a ': ' inside an unquoted value? quote the whole value, "
                                           "e.g. description: \"Note: ...\"",
    "found character '\\t'": "indent with spaces: YAML does not allow tabs there",
    "that cannot start any token": "quote a value that starts with @ or `",
    "expected <block end>": "is this line indented like its siblings?",
    "could not find expected ':'": "a key without ':', or a quote never closed on an earlier line?",
}


def yaml_problem(err: Exception) -> str:
    """A PyYAML error as 'invalid YAML at line L, column C: problem (context) hint', in one line.

    Only what the parser says about the text (its own short excerpts of the file), never a snippet of it.
    """
    problem, mark = getattr(err, "problem", None), getattr(err, "problem_mark", None)
    if not problem:
        reason = str(err).replace(' in "<unicode string>"', "")  # what a reader error calls the text
        return f"invalid YAML: {one_line(reason, 200)}"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = f"invalid YAML{where}: {one_line(problem, 200)}"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context:
        started = (f" that starts at line {context_mark.line + 1}, column {context_mark.column + 1}"
                   if context_mark is not None and (mark is None or context_mark.line != mark.line
                                                    or context_mark.column != mark.column) else "")
        text += f" ({one_line(context, 120)}{started})"
    hint = next((h for part, h in _YAML_HINTS.items() if part in problem), None)
    return f"{text}; {hint}" if hint else text
