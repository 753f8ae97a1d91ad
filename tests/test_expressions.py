import polars as pl
import pytest

from mapwise.mapping.expressions import ExpressionError, compile_expression

FRAME = pl.DataFrame(
    {
        "inv": ["C1", "2", None],
        "qty": [-2, 3, 1],
        "price": [1.5, 2.0, None],
        "Odd Name": ["a", "b", "c"],
        "__line__": [2, 3, 4],
        "__file__": ["f.csv"] * 3,
    }
)


def ev(text: str) -> list:
    return FRAME.with_columns(compile_expression(text).expr.alias("out"))["out"].to_list()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abs(qty) * price", [3.0, 6.0, None]),
        ("qty + 1", [-1, 4, 2]),
        ("qty // 2", [-1, 1, 0]),
        ("'return' if starts_with(inv, 'C') else 'purchase'", ["return", "purchase", "purchase"]),
        ("if_else(qty > 0, 'pos', 'neg')", ["neg", "pos", "pos"]),
        ("inv in ['C1', '2']", [True, True, None]),
        ("inv not in ['C1']", [False, True, None]),
        ("0 < qty <= 3", [False, True, True]),
        ("qty > 0 and price > 1.8", [False, True, None]),
        ("not (qty > 0)", [True, False, False]),
        ("concat('f-', line())", ["f-2", "f-3", "f-4"]),
        ("concat(file(), ':', line())", ["f.csv:2", "f.csv:3", "f.csv:4"]),
        ("coalesce(price, 0.0)", [1.5, 2.0, 0.0]),
        ("lower(col('Odd Name'))", ["a", "b", "c"]),
        ("upper(replace(col('Odd Name'), 'a', 'x'))", ["X", "B", "C"]),
        ("substr(inv, 0, 1)", ["C", "2", None]),
        ("length(inv)", [2, 1, None]),
        ("is_null(price)", [False, False, True]),
        ("float(qty) / 2", [-1.0, 1.5, 0.5]),
        ("round(price * 1.01, 1)", [1.5, 2.0, None]),
        ("True", [True, True, True]),
    ],
)
def test_expression_values(text, expected):
    assert ev(text) == expected


def test_columns_read_are_reported():
    assert compile_expression("abs(qty) * price if inv else col('Odd Name')").columns == {
        "qty",
        "price",
        "inv",
        "Odd Name",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('echo hi')", "only plain calls"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("qty.__class__", "not allowed"),
        ("[x for x in qty]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("qty[0]", "not allowed"),
        ("qty ** 2", "not allowed"),
        ("abs(x=qty)", "only plain calls"),
        ("abs(qty, 2)", "takes 1 argument"),
        ("starts_with(inv, price)", "quoted string literal"),
        ("inv in other", "literal list"),
        ("qty +", "cannot parse"),
        ("col('a', 'b')", "one quoted column name"),
        ("__line__", "reserved"),
    ],
)
def test_rejected_expressions(text, message):
    with pytest.raises(ExpressionError, match=message):
        compile_expression(text)
