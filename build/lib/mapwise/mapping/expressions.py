"""A small, safe expression language for mappings, compiled to polars expressions.

Expressions use Python syntax but only this subset; nothing is ever evaluated as Python:

- column names (`Quantity`), or `col('Name with spaces')`; literals: strings, numbers,
  `True`, `False`, `None`
- arithmetic `+ - * / // %`, comparisons (chained too), `and`, `or`, `not`,
  `x in ['a', 'b']`, `x not in [...]`, and `a if condition else b`
- the functions in `FUNCTIONS` below, e.g. `abs(Quantity)`, `starts_with(InvoiceNo, 'C')`,
  `concat('web-', line())`
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

LINE_COLUMN = "__line__"
FILE_COLUMN = "__file__"


class ExpressionError(ValueError):
    """An expression that is not valid in the mapping language."""


@dataclass(frozen=True)
class Compiled:
    """A compiled expression and the source columns it reads."""

    text: str
    expr: pl.Expr
    columns: frozenset[str]


def _literal_str(node: ast.expr, fn: str) -> str:
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        raise ExpressionError(f"{fn}() takes a quoted string literal here")
    return node.value


def _literal_int(node: ast.expr, fn: str) -> int:
    if not (isinstance(node, ast.Constant) and isinstance(node.value, int)):
        raise ExpressionError(f"{fn}() takes an integer literal here")
    return node.value


_CASTS = {"int": pl.Int64, "float": pl.Float64, "str": pl.String, "bool": pl.Boolean}

# name -> (minimum args, maximum args or None, builder(compiled args, raw ast args))
FUNCTIONS: dict[str, tuple[int, int | None, Callable[[list[pl.Expr], list[ast.expr]], pl.Expr]]] = {
    "abs": (1, 1, lambda a, _: a[0].abs()),
    "round": (1, 2, lambda a, n: a[0].round(_literal_int(n[1], "round") if len(n) > 1 else 0)),
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
            _literal_int(n[1], "substr"), _literal_int(n[2], "substr") if len(n) > 2 else None
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
            raise ExpressionError(f"'{ast.unparse(node)}' is not allowed (no {type(node).__name__})")
        return method(node)

    def _column(self, name: str) -> pl.Expr:
        if name in (LINE_COLUMN, FILE_COLUMN) or name.startswith("__"):
            raise ExpressionError(f"column name '{name}' is reserved")
        self.columns.add(name)
        return pl.col(name)

    def _Name(self, node: ast.Name) -> pl.Expr:
        return self._column(node.id)

    def _Constant(self, node: ast.Constant) -> pl.Expr:
        if not isinstance(node.value, (str, int, float, bool, type(None))):
            raise ExpressionError(f"literal {node.value!r} is not allowed")
        return pl.lit(node.value)

    def _BinOp(self, node: ast.BinOp) -> pl.Expr:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise ExpressionError(f"operator in '{ast.unparse(node)}' is not allowed")
        return op(self.visit(node.left), self.visit(node.right))

    def _UnaryOp(self, node: ast.UnaryOp) -> pl.Expr:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.Not):
            return operand.not_()
        raise ExpressionError(f"operator in '{ast.unparse(node)}' is not allowed")

    def _BoolOp(self, node: ast.BoolOp) -> pl.Expr:
        values = [self.visit(v) for v in node.values]
        return pl.all_horizontal(values) if isinstance(node.op, ast.And) else pl.any_horizontal(values)

    def _Compare(self, node: ast.Compare) -> pl.Expr:
        parts = []
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(comparator, (ast.List, ast.Tuple)):
                    raise ExpressionError("'in' takes a literal list, e.g. x in ['a', 'b']")
                values = [self._literal(e) for e in comparator.elts]
                test = left.is_in(values)
                parts.append(test.not_() if isinstance(op, ast.NotIn) else test)
                continue
            right = self.visit(comparator)
            parts.append(_COMPARE[type(op)](left, right))
            left = right
        return parts[0] if len(parts) == 1 else pl.all_horizontal(parts)

    def _literal(self, node: ast.expr) -> object:
        if not isinstance(node, ast.Constant):
            raise ExpressionError(f"'{ast.unparse(node)}' must be a literal")
        return node.value

    def _IfExp(self, node: ast.IfExp) -> pl.Expr:
        return pl.when(self.visit(node.test)).then(self.visit(node.body)).otherwise(self.visit(node.orelse))

    def _Call(self, node: ast.Call) -> pl.Expr:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise ExpressionError(f"'{ast.unparse(node)}': only plain calls of known functions")
        name, args = node.func.id, node.args
        if name == "col":
            if len(args) != 1:
                raise ExpressionError("col() takes one quoted column name")
            return self._column(_literal_str(args[0], "col"))
        if name not in FUNCTIONS:
            known = ", ".join(sorted([*FUNCTIONS, "col"]))
            raise ExpressionError(f"unknown function '{name}' (known: {known})")
        low, high, build = FUNCTIONS[name]
        if len(args) < low or (high is not None and len(args) > high):
            raise ExpressionError(f"{name}() takes {low}{'' if high == low else '+'} argument(s)")
        return build([self.visit(a) for a in args], args)


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> Compiled:
    """Compile one mapping expression (cached: mappings ask for the same text at several steps)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"cannot parse '{text}': {err.msg}") from None
    compiler = _Compiler()
    expr = compiler.visit(tree.body)
    return Compiled(text=text, expr=expr, columns=frozenset(compiler.columns))
