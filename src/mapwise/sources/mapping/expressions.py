"""A small, safe expression language for mappings, compiled to polars expressions.

Expressions use Python syntax but only this subset; nothing is ever evaluated as Python:

- column names (`Quantity`), or `col('Name with spaces')`; literals: strings, numbers,
  `True`, `False`, `None`
- arithmetic `+ - * / // %`, comparisons (chained too), `and`, `or`, `not`,
  `x in ['a', 'b']`, `x not in [...]`, and `a if condition else b`
- the functions in `FUNCTIONS` below, e.g. `abs(Quantity)`, `starts_with(InvoiceNo, 'C')`,
  `concat('web-', line())`

Anything else is refused with an ExpressionError, as is an expression over the size limits below.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from mapwise.errors import engine_problem, one_line

LINE_COLUMN = "__line__"
FILE_COLUMN = "__file__"

MAX_CHARS = 10_000  # characters in one expression
MAX_NODES = 2_000  # parts of its syntax tree (names, literals, operators...)
MAX_DEPTH = 50  # levels of nesting
MAX_IN_VALUES = 1_000  # values in an `in` list
MAX_INT = 2**63 - 1  # integer literals fit in 64 bits


class ExpressionError(ValueError):
    """An expression that is not valid in the mapping language."""


@dataclass(frozen=True)
class Compiled:
    """A compiled expression and the source columns it reads."""

    text: str
    expr: pl.Expr
    columns: frozenset[str]


def _quote(node: ast.AST) -> str:
    return f"'{one_line(ast.unparse(node))}'"


def _is_text(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _literal(node: ast.expr) -> str | int | float | bool | None:
    """The value of a literal (a negative number too); anything else is refused."""
    negative = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
    inner = node.operand if negative else node
    if not isinstance(inner, ast.Constant):
        raise ExpressionError(f"{_quote(node)} must be a literal")
    value = inner.value
    if value is not None and type(value) not in (str, int, float, bool):
        raise ExpressionError(f"literal {_quote(node)} is not allowed (strings, numbers, True, False, None)")
    if negative and type(value) not in (int, float):
        raise ExpressionError(f"{_quote(node)}: only numbers can be negative")
    if type(value) is int and abs(value) > MAX_INT:
        raise ExpressionError(f"integer {_quote(node)} does not fit in 64 bits")
    if type(value) is float and not math.isfinite(value):
        raise ExpressionError(f"number {_quote(node)} is out of range")
    return -value if negative else value


def _literal_str(node: ast.expr, fn: str) -> str:
    if not _is_text(node):
        raise ExpressionError(f"{fn}() takes a quoted string literal here, not {_quote(node)}")
    return node.value


def _literal_int(node: ast.expr, fn: str, low: int, high: int = MAX_INT) -> int:
    try:
        value = _literal(node)
    except ExpressionError:
        value = None
    if type(value) is not int or not low <= value <= high:
        raise ExpressionError(f"{fn}() takes an integer literal from {low} to {high} here, not {_quote(node)}")
    return value


_CASTS = {"int": pl.Int64, "float": pl.Float64, "str": pl.String, "bool": pl.Boolean}

# name -> (minimum args, maximum args or None, builder(compiled args, raw ast args))
FUNCTIONS: dict[str, tuple[int, int | None, Callable[[list[pl.Expr], list[ast.expr]], pl.Expr]]] = {
    "abs": (1, 1, lambda a, _: a[0].abs()),
    "round": (1, 2, lambda a, n: a[0].round(_literal_int(n[1], "round", 0, 15) if len(n) > 1 else 0)),
    "lower": (1, 1, lambda a, _: a[0].str.to_lowercase()),
    "upper": (1, 1, lambda a, _: a[0].str.to_uppercase()),
    "strip": (1, 1, lambda a, _: a[0].str.strip_chars()),
    "length": (1, 1, lambda a, _: a[0].str.len_chars()),
    "starts_with": (2, 2, lambda a, n: a[0].str.starts_with(_literal_str(n[1], "starts_with"))),
    "ends_with": (2, 2, lambda a, n: a[0].str.ends_with(_literal_str(n[1], "ends_with"))),
    "contains": (2, 2, lambda a, n: a[0].str.contains(_literal_str(n[1], "contains"), literal=True)),
    "replace": (
        3,
        3,
        lambda a, n: a[0].str.replace_all(
            _literal_str(n[1], "replace"), _literal_str(n[2], "replace"), literal=True
        ),
    ),
    "substr": (
        2,
        3,
        lambda a, n: a[0].str.slice(
            _literal_int(n[1], "substr", -MAX_INT), _literal_int(n[2], "substr", 0) if len(n) > 2 else None
        ),
    ),
    "concat": (1, None, lambda a, _: pl.concat_str([x.cast(pl.String) for x in a])),
    "coalesce": (1, None, lambda a, _: pl.coalesce(a)),
    "if_else": (3, 3, lambda a, _: pl.when(a[0]).then(a[1]).otherwise(a[2])),
    "is_null": (1, 1, lambda a, _: a[0].is_null()),
    "not_null": (1, 1, lambda a, _: a[0].is_not_null()),
    "line": (0, 0, lambda a, _: pl.col(LINE_COLUMN)),
    "file": (0, 0, lambda a, _: pl.col(FILE_COLUMN)),
    **{
        name: (1, 1, lambda a, _, dtype=dtype: a[0].cast(dtype, strict=False))
        for name, dtype in _CASTS.items()
    },
}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class _Compiler:
    def __init__(self) -> None:
        self.columns: set[str] = set()

    def visit(self, node: ast.expr) -> pl.Expr:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise ExpressionError(f"{_quote(node)} is not allowed (no {type(node).__name__})")
        return method(node)

    def _column(self, name: str) -> pl.Expr:
        if name in (LINE_COLUMN, FILE_COLUMN) or name.startswith("__"):
            raise ExpressionError(f"column name '{one_line(name)}' is reserved")
        if name == "*" or (name.startswith("^") and name.endswith("$")):
            raise ExpressionError(f"column name '{one_line(name)}' would select several columns")
        self.columns.add(name)
        return pl.col(name)

    def _Name(self, node: ast.Name) -> pl.Expr:
        return self._column(node.id)

    def _Constant(self, node: ast.Constant) -> pl.Expr:
        return pl.lit(_literal(node))

    def _BinOp(self, node: ast.BinOp) -> pl.Expr:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise ExpressionError(f"operator in {_quote(node)} is not allowed")
        if not isinstance(node.op, ast.Add) and any(_is_text(side) for side in (node.left, node.right)):
            raise ExpressionError(f"{_quote(node)}: text can only be joined with +")
        return op(self.visit(node.left), self.visit(node.right))

    def _UnaryOp(self, node: ast.UnaryOp) -> pl.Expr:
        if isinstance(node.op, ast.USub) and not _is_text(node.operand):
            return -self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return self.visit(node.operand).not_()
        raise ExpressionError(f"operator in {_quote(node)} is not allowed")

    def _BoolOp(self, node: ast.BoolOp) -> pl.Expr:
        values = [self.visit(v) for v in node.values]
        return pl.all_horizontal(values) if isinstance(node.op, ast.And) else pl.any_horizontal(values)

    def _Compare(self, node: ast.Compare) -> pl.Expr:
        if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if len(node.ops) > 1:
                raise ExpressionError(f"{_quote(node)}: 'in' cannot be chained with other comparisons")
            return self._in(node)
        parts = []
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            compare = _COMPARE.get(type(op))
            if compare is None:
                hint = " (use is_null(x) or not_null(x))" if isinstance(op, (ast.Is, ast.IsNot)) else ""
                raise ExpressionError(f"operator in {_quote(node)} is not allowed{hint}")
            right = self.visit(comparator)
            parts.append(compare(left, right))
            left = right
        return parts[0] if len(parts) == 1 else pl.all_horizontal(parts)

    def _in(self, node: ast.Compare) -> pl.Expr:
        listed = node.comparators[0]
        if not isinstance(listed, (ast.List, ast.Tuple)):
            raise ExpressionError(f"{_quote(node)}: 'in' takes a literal list, e.g. x in ['a', 'b']")
        if len(listed.elts) > MAX_IN_VALUES:
            raise ExpressionError(f"{_quote(node)}: 'in' list of {len(listed.elts)} values (at most {MAX_IN_VALUES})")
        values = [_literal(e) for e in listed.elts]
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        if len(kinds) > 1:
            raise ExpressionError(f"{_quote(node)}: 'in' list mixes {' and '.join(kinds)}: give one type (and None)")
        test = self.visit(node.left).is_in(values)
        return test.not_() if isinstance(node.ops[0], ast.NotIn) else test

    def _IfExp(self, node: ast.IfExp) -> pl.Expr:
        return pl.when(self.visit(node.test)).then(self.visit(node.body)).otherwise(self.visit(node.orelse))

    def _Call(self, node: ast.Call) -> pl.Expr:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise ExpressionError(f"{_quote(node)}: only plain calls of known functions")
        name, args = node.func.id, node.args
        if name == "col":
            if len(args) != 1:
                raise ExpressionError(f"{_quote(node)}: col() takes one quoted column name")
            return self._column(_literal_str(args[0], "col"))
        if name not in FUNCTIONS:
            known = ", ".join(sorted([*FUNCTIONS, "col"]))
            raise ExpressionError(f"unknown function '{one_line(name)}' (known: {known})")
        low, high, build = FUNCTIONS[name]
        if len(args) < low or (high is not None and len(args) > high):
            raise ExpressionError(f"{_quote(node)}: {name}() takes {low}{'' if high == low else '+'} argument(s)")
        return build([self.visit(a) for a in args], args)


def _check_size(tree: ast.AST, text: str) -> None:
    """Refuse trees with too many parts or too deep (walked without recursion)."""
    nodes, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ExpressionError(f"'{one_line(text)}' is too large (more than {MAX_NODES} parts)")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"'{one_line(text)}' nests more than {MAX_DEPTH} levels deep")
        children = (child for child in ast.iter_child_nodes(node) if not isinstance(child, ast.expr_context))
        stack.extend((child, depth + 1) for child in children)


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> Compiled:
    """Compile one mapping expression (cached: mappings ask for the same text at several steps)."""
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"'{one_line(text)}' is too long (at most {MAX_CHARS} chars)")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as err:
        problem = err.msg if isinstance(err, SyntaxError) else str(err)
        raise ExpressionError(f"cannot parse '{one_line(text)}': {one_line(problem)}") from None
    except (RecursionError, MemoryError):  # Python's own parser gives up on deep nesting this way
        raise ExpressionError(f"'{one_line(text)}' nests more than {MAX_DEPTH} levels deep") from None
    _check_size(tree.body, text)
    compiler = _Compiler()
    try:
        expr = compiler.visit(tree.body)
    except ExpressionError:
        raise
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as err:
        raise ExpressionError(f"'{one_line(text)}' cannot be built: {engine_problem(err)}") from None
    return Compiled(text=text, expr=expr, columns=frozenset(compiler.columns))
