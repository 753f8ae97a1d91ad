"""JSON as RFC 8259 has it, for every reader of outside JSON (a JSON-lines source, a request body):
UTF-8, no NaN or Infinity, no key twice in one object, bounded nesting."""

from __future__ import annotations

import json
import math
import re


def strict_json(raw: bytes) -> object:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity, no duplicate keys, no lone surrogate (`"\\ud800"`: no
    character, and no UTF-8 for it); json.JSONDecodeError otherwise."""
    try:
        value = json.loads(raw.decode(), object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                           parse_float=_finite)
        if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
            raise json.JSONDecodeError("a lone surrogate escape is not text", "", 0)
        return value
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer past Python's digit limit
        raise json.JSONDecodeError("number too long", "", 0) from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise json.JSONDecodeError(f"duplicate key {json.dumps(twice)[:40]}", "", 0)
    return found


def _no_constant(name: str) -> float:
    raise json.JSONDecodeError(f"{name} is not JSON", "", 0)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError("number out of range", "", 0)
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: object) -> bool:
    """Whether a string in `value` holds a surrogate that no pair completed (json.loads keeps those)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
