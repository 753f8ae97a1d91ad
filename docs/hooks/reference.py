"""MkDocs hook: the reference parts of the docs, generated from the code at build time.

A page asks for a generated block with an HTML comment on a line of its own:

    <!-- mapwise:params -->             every params.yaml key, from mapwise.params.Params
    <!-- mapwise:mapping-keys -->       the keys of a mapping file, from the Mapping model
    <!-- mapwise:functions -->          the mapping language's functions and limits
    <!-- mapwise:contracts -->          the canonical tables' columns and checks
    <!-- mapwise:endpoints -->          the HTTP endpoints, from the FastAPI app's OpenAPI schema
    <!-- mapwise:bench NAME -->         a table from bench/results/NAME.json
    <!-- mapwise:pipeline-graph -->     the stages of dvc.yaml, drawn (inline SVG)
    <!-- mapwise:layers -->             the layers of the import contract, drawn, and today's imports between domains

An unknown block name, or a generator that fails, fails the build. Every import of mapwise is in the
`_load_*` functions and `openapi_schema` just below: the only places to repoint when code moves.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import types
import typing
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

log = logging.getLogger("mkdocs.hooks.reference")  # a warning here fails `mkdocs build --strict`
ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/hooks/reference.py


# ---------------------------------------------------------------- what is read from mapwise (repoint here)


def _load_params_model() -> type:
    from mapwise.params import Params

    return Params


def _load_mapping_models() -> tuple[type, type]:
    from mapwise.sources.contracts import TraitSpec
    from mapwise.sources.mapping.spec import Mapping

    return Mapping, TraitSpec


def _load_expressions() -> types.ModuleType:
    from mapwise.sources.mapping import expressions

    return expressions


def _load_contracts() -> dict:
    from mapwise.sources.contracts import CONTRACTS

    return CONTRACTS


def openapi_schema() -> dict:
    """The service's OpenAPI schema, from an app with no model loaded and the default `serve` params.

    The one place that builds the app (the docs test calls it too): repoint it if the factory moves.
    """
    from mapwise.serving.app import create_app
    from mapwise.serving.keepers import FolderSource, Keeper

    serve_params = _load_params_model().model_fields["serve"].annotation  # ServeParams, wherever it lives
    keeper = Keeper(FolderSource(ROOT / "nonexistent"))  # never refreshed: nothing is loaded
    return create_app(keeper, b"0" * 32, serve_params()).openapi()


# ---------------------------------------------------------------- MkDocs events


def on_config(config, **_: Any):
    """Import the code of this tree, not an installed copy."""
    for path in (ROOT, ROOT / "src"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return config


_MARKER = re.compile(r"^<!--[ \t]*mapwise:([a-z-]+)(?:[ \t]+(\S+))?[ \t]*-->[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, page, **_: Any) -> str:
    def render(match: re.Match) -> str:
        name, arg = match.group(1), match.group(2)
        generator = GENERATORS.get(name)
        if generator is None:
            raise ValueError(f"{page.file.src_path}: unknown generated block 'mapwise:{name}' "
                             f"(known: {', '.join(GENERATORS)})")
        return "\n" + (generator(arg) if arg else generator()).strip("\n") + "\n"  # a block of its own

    return _MARKER.sub(render, markdown)


# ---------------------------------------------------------------- formatting helpers


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell: outside code spans, | < > * are written as text, not markup."""
    text, out, pos = str(text).replace("\n", " "), [], 0
    for match in _CODE_SPAN.finditer(text):
        out += [_plain(text[pos:match.start()]), match.group(0)]  # the tables extension ignores | in code spans
        pos = match.end()
    return "".join([*out, _plain(text[pos:])])


def _plain(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("*", "\\*"))


def _code(value: object) -> str:
    text = str(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _yaml_value(value: object, limit: int = 90) -> str:
    """A value as it would be written in params.yaml (flow style), shortened when long."""
    if isinstance(value, Path):
        value = str(value)
    elif isinstance(value, datetime):
        value = value.isoformat().replace("+00:00", "Z")
    elif isinstance(value, date):
        value = value.isoformat()
    elif hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, (list, dict, tuple)):
        value = json.loads(json.dumps(value, default=str))
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _doc(model: type) -> str:
    """A model's docstring, its paragraphs kept."""
    return "\n\n".join(" ".join(p.split()) for p in (model.__doc__ or "").strip().split("\n\n") if p.strip())


# ---------------------------------------------------------------- pydantic models -> tables


def _is_model(tp: object) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_fields")


def _args(tp: object) -> tuple:
    return typing.get_args(tp)


def _is_union(tp: object) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _type_name(tp: object) -> str:
    """A type as a reader of a YAML file thinks of it."""
    if tp is type(None):
        return "null"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in _args(tp))
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "text" if all(isinstance(a, str) for a in _args(tp)) else "value"
    if origin is typing.Annotated:
        return _type_name(_args(tp)[0])
    if origin in (list, tuple, set):
        return f"list of {_type_name(_args(tp)[0])}" if _args(tp) else "list"
    if origin is dict:
        key, value = _args(tp)
        return f"map {_type_name(key)} → {_type_name(value)}"
    if _is_model(tp):
        return "section"
    return {str: "text", int: "integer", float: "number", bool: "true/false", Path: "path",
            datetime: "timestamp", date: "date"}.get(tp, getattr(tp, "__name__", str(tp)))


def _literals(tp: object) -> list:
    """Every Literal choice inside a type (through unions, lists, Annotated)."""
    if typing.get_origin(tp) is Literal:
        return list(_args(tp))
    if typing.get_origin(tp) is dict:
        return []  # keys are described by the key path
    return [v for a in _args(tp) for v in _literals(a)]


def _constraints(field) -> list[str]:
    out = []
    for meta in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                out.append(f"{sign} {getattr(meta, attr)}")
        unit = "characters" if field.annotation is str else "items"
        if getattr(meta, "min_length", None) is not None:
            out.append(f"at least {meta.min_length} {unit}")
        if getattr(meta, "max_length", None) is not None:
            out.append(f"at most {meta.max_length} {unit}")
        if getattr(meta, "pattern", None):
            out.append(f"matches {_code(meta.pattern)}")
    choices = _literals(field.annotation)
    if choices:
        out.append("one of " + ", ".join(_code(_yaml_value(c)) for c in choices))
    return out


def _models_in(tp: object) -> list[type]:
    """Models a field holds directly (X, X | None, X | Y)."""
    if _is_model(tp):
        return [tp]
    if _is_union(tp):
        return [a for a in _args(tp) if _is_model(a)]
    return []


def _dict_of_models(tp: object) -> tuple[object, list[type]] | None:
    """For dict[K, Model] (or an optional one): the key type and the value models."""
    for candidate in (tp, *(_args(tp) if _is_union(tp) else ())):
        if typing.get_origin(candidate) is dict:
            key, value = _args(candidate)
            models = _models_in(value)
            if models:
                return key, models
    return None


_MISSING = object()
_PLACEHOLDERS = {"tables": "<table>", "per_model": "<model>", "tasks": "<task>", "augment": "<task>",
                 "space": "<key>", "traits": "<trait>", "timestamps": "<column>"}  # how a map's keys are named in key paths


def _default(field, instance: object = _MISSING, name: str = "") -> object:
    if instance is not _MISSING and instance is not None:
        return getattr(instance, name)
    if field.is_required():
        return _MISSING
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def _lookup(data: object, path: list[str]) -> object:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _rows(model: type, prefix: list[str], instance: object, yaml_data: object) -> list[dict]:
    """One row per key of `model` and of the sections under it, key paths from `prefix`."""
    rows = []
    for name, field in model.model_fields.items():
        path = [*prefix, name]
        default = _default(field, instance, name)
        in_yaml = _lookup(yaml_data, path) if yaml_data is not None else _MISSING
        models, mapped = _models_in(field.annotation), _dict_of_models(field.annotation)
        description = field.description or ""
        if models and not description:
            description = " or ".join(_first_paragraph(m.__doc__) for m in models)
        row = {
            "key": ".".join(path), "type": _type_name(field.annotation), "description": description,
            "constraints": _constraints(field), "default": default, "yaml": in_yaml,
        }
        if models and len(models) == 1 and default is not None:
            rows.append({**row, "default": _MISSING if default is _MISSING else "(section)", "yaml": _MISSING})
            rows += _rows(models[0], path, None if default is _MISSING else default, yaml_data)
        elif models:  # optional section or one of several sections
            rows.append({**row, "yaml": _MISSING if isinstance(in_yaml, dict) else in_yaml})
            for m in models:
                rows += _rows(m, path, None, yaml_data)
        elif mapped:
            key_type, value_models = mapped
            placeholder = _PLACEHOLDERS.get(name, f"<{name}>")
            choices = _literals(key_type)
            if choices:
                row["constraints"].append("keys: " + ", ".join(_code(c) for c in choices))
            rows.append(row)
            for m in value_models:
                rows += _rows(m, [*path, placeholder], None, None)
        else:
            rows.append(row)
    return rows


def _table(rows: list[dict], with_yaml: bool) -> str:
    head = ["key", "type", "default"] + (["params.yaml"] if with_yaml else []) + ["description", "constraints"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        default = "*required*" if r["default"] is _MISSING else (
            r["default"] if r["default"] == "(section)" else _code(_yaml_value(r["default"])))
        cells = [_code(r["key"]), _cell(r["type"]), default]
        if with_yaml:
            cells.append("" if r["yaml"] is _MISSING else _code(_yaml_value(r["yaml"])))
        cells += [_cell(r["description"]), _cell("; ".join(r["constraints"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- generators


def params_reference() -> str:
    """Per params.yaml section: a heading, the section's docstring and a table of every key under it."""
    Params = _load_params_model()
    params_file = ROOT / "params.yaml"
    yaml_data = yaml.safe_load(params_file.read_text(encoding="utf-8")) if params_file.exists() else None
    out = []
    for name, field in Params.model_fields.items():
        models = _models_in(field.annotation)
        model = models[0]
        default = _default(field)
        required = "required" if default is _MISSING else ("optional (null = the stage is skipped or the "
                                                              "feature off)" if default is None else "optional")
        out += [f"## {name}", "", f"*Section {required}; model `{model.__name__}`.*", "",
                "\n\n".join(_cell(p) for p in _doc(model).split("\n\n")), ""]
        instance = None if default in (_MISSING, None) else default
        out += [_table(_rows(model, [name], instance, yaml_data), with_yaml=yaml_data is not None), ""]
    return "\n".join(out)


def mapping_keys() -> str:
    Mapping, TraitSpec = _load_mapping_models()
    del TraitSpec  # reached through Mapping.traits
    return _table(_rows(Mapping, [], None, None), with_yaml=False)


# What each function of the mapping language does: FUNCTIONS in expressions.py is the list of names;
# a name missing here warns (and fails the strict build), one that is gone from FUNCTIONS too.
FUNCTION_DOCS = {
    "abs": ("x", "absolute value"),
    "round": ("x, digits=0", "rounded to `digits` (an integer literal, 0 to 15) decimals"),
    "lower": ("text", "lower case"),
    "upper": ("text", "upper case"),
    "strip": ("text", "without surrounding white space"),
    "length": ("text", "number of characters"),
    "starts_with": ("text, 'prefix'", "true when the text starts with the literal prefix"),
    "ends_with": ("text, 'suffix'", "true when the text ends with the literal suffix"),
    "contains": ("text, 'part'", "true when the text contains the literal part"),
    "replace": ("text, 'old', 'new'", "every occurrence of the literal `old` replaced by `new`"),
    "substr": ("text, start, length?", "characters from `start` (0-based; negative counts from the end), "
               "`length` of them or to the end (integer literals)"),
    "concat": ("a, b, ...", "the values joined as text"),
    "coalesce": ("a, b, ...", "the first value that is not null"),
    "if_else": ("condition, a, b", "`a` where the condition holds, else `b` (as `a if condition else b`)"),
    "is_null": ("x", "true where the value is missing"),
    "not_null": ("x", "true where the value is present"),
    "line": ("", "the record's line number in its file (e.g. to build an id)"),
    "file": ("", "the file the record comes from"),
    "int": ("x", "cast to integer (a value that does not convert becomes null)"),
    "float": ("x", "cast to number (a value that does not convert becomes null)"),
    "str": ("x", "cast to text"),
    "bool": ("x", "cast to true/false (a value that does not convert becomes null)"),
}


def expression_functions() -> str:
    expressions = _load_expressions()
    functions = expressions.FUNCTIONS
    lines = ["| function | arguments | gives |", "| --- | --- | --- |",
             "| `col('Name')` | a quoted column name | the column, for names that are not identifiers (spaces...) |"]
    for name, (low, high, _) in functions.items():
        args, what = FUNCTION_DOCS.get(name, ("", ""))
        if name not in FUNCTION_DOCS:
            log.warning("mapping function '%s' has no description in docs/hooks/reference.py FUNCTION_DOCS", name)
        count = f"{low}" if high == low else (f"{low} or more" if high is None else f"{low} to {high}")
        lines.append(f"| `{name}({args})` | {count} | {_cell(what)} |")
    for gone in sorted(set(FUNCTION_DOCS) - set(functions)):
        log.warning("FUNCTION_DOCS in docs/hooks/reference.py describes '%s', which the language no longer has", gone)
    limits = [("MAX_CHARS", "characters in one expression"), ("MAX_NODES", "parts of its syntax tree"),
              ("MAX_DEPTH", "levels of nesting"), ("MAX_IN_VALUES", "values in an `in` list")]
    lines += ["", "Limits: " + "; ".join(f"{getattr(expressions, k):,} {what}" for k, what in limits
                                         if hasattr(expressions, k)) + "."]
    return "\n".join(lines)


def contracts() -> str:
    out = []
    for contract in _load_contracts().values():
        out += [f"### `{contract.name}`", "", f"{contract.kind.capitalize()} table, key `{contract.key}`.", "",
                "| column | type | required | checks |", "| --- | --- | --- | --- |"]
        for name, col in contract.schema.columns.items():
            checks = [str(ch.error or ch.name) for ch in col.checks]
            checks = (["unique"] if col.unique else []) + checks
            out.append(f"| `{name}` | {_cell(col.dtype)} | {'yes' if not col.nullable else ''} | "
                       f"{_cell(', '.join(_code(c) for c in checks))} |")
        out.append("")
    return "\n".join(out)


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _schema_type(schema: dict, spec: dict) -> str:
    if "anyOf" in schema:
        return " or ".join(_schema_type(s, spec) for s in schema["anyOf"])
    if "$ref" in schema:
        return "object"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_schema_type(schema.get('items', {}), spec)}"
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
            "object": "object", "null": "null"}.get(kind, str(kind))


def _schema_constraints(schema: dict) -> list[str]:
    out = []
    for s in [schema, *schema.get("anyOf", [])]:
        for key, label in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"),
                           ("minLength", "min length"), ("maxLength", "max length"),
                           ("minItems", "min items"), ("maxItems", "max items")):
            if key in s:
                out.append(f"{label} {_num(s[key])}")
        if "enum" in s:
            out.append("one of " + ", ".join(_code(v) for v in s["enum"]))
        items = s.get("items", {})
        for key, label in (("minLength", "each: min length"), ("maxLength", "each: max length"),
                           ("pattern", "each matches")):
            if key in items:
                out.append(f"{label} {_code(items[key]) if key == 'pattern' else items[key]}")
        if "pattern" in s:
            out.append(f"matches {_code(s['pattern'])}")
    return out


def _fields(schema: dict, spec: dict, prefix: str = "") -> list[str]:
    schema = _resolve(schema, spec)
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        nested = [_resolve(s, spec) for s in [prop, *prop.get("anyOf", [])] if "$ref" in s]
        default = "" if "default" not in prop else _code(json.dumps(prop["default"]))
        rows.append(f"| `{prefix}{name}` | {_cell(_schema_type(prop, spec))} | {'yes' if name in required else ''} | "
                    f"{default} | {_cell(prop.get('description', ''))} | "
                    f"{_cell('; '.join(_schema_constraints(prop)))} |")
        for sub in nested:
            rows += _fields(sub, spec, f"{prefix}{name}.")
    return rows


def endpoints() -> str:
    spec = openapi_schema()
    out = [f"*{spec['info']['title']}*, OpenAPI {spec['openapi']}: {spec['info'].get('description', '')}", "",
           "| method | path | summary |", "| --- | --- | --- |"]
    operations = [(path, method.upper(), op) for path, item in spec["paths"].items() for method, op in item.items()]
    out += [f"| {m} | [`{p}`](#{_anchor(m, p)}) | {_cell(op.get('summary', ''))} |" for p, m, op in operations]
    for path, method, op in operations:
        out += ["", f"### {method} `{path}` {{#{_anchor(method, path)}}}", "", op.get("summary", ""), ""]
        if op.get("description"):
            out += [op["description"], ""]
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body:
            resolved = _resolve(body, spec)
            out += [f"Request body (JSON, `{body.get('$ref', '').rsplit('/', 1)[-1] or 'object'}`)"
                    + (f": {_first_paragraph(resolved.get('description'))}" if resolved.get("description") else ""), "",
                    "| field | type | required | default | description | constraints |",
                    "| --- | --- | --- | --- | --- | --- |", *_fields(body, spec), ""]
        ok = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}).get("schema")
        if ok:
            out += [f"Response `200` (JSON, `{ok.get('$ref', '').rsplit('/', 1)[-1] or 'object'}`):", "",
                    "| field | type | required | default | description | constraints |",
                    "| --- | --- | --- | --- | --- | --- |", *_fields(ok, spec), ""]
        out += ["Responses (every error is `{\"error\": \"<one line>\"}`):", ""]
        for code, response in sorted(op.get("responses", {}).items()):
            out.append(f"- `{code}`: {response.get('description', '')}")
        out.append("")
    return "\n".join(out)


def _anchor(method: str, path: str) -> str:
    return f"{method.lower()}-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


# ---------------------------------------------------------------- benchmark results


def _bench_file(name: str) -> dict:
    path = ROOT / "bench" / "results" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _num(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() else f"{value:,}"
    return str(value)


def _grid(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(label for _, label in columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(_num(row.get(key, ""))) for key, _ in columns) + " |")
    return "\n".join(lines)


def bench(name: str) -> str:
    data = _bench_file(name)
    source = f"From `bench/results/{name}.json`"
    if name == "ingest":
        steps = sorted({k for r in data["results"] for k in r.get("steps_s", {})})
        rows = [{**r, **{f"step_{k}": v for k, v in r.get("steps_s", {}).items()}} for r in data["results"]]
        return "\n\n".join([
            f"{source} (machine: {_num(data['machine'].get('cpus'))} CPUs, polars {data['machine'].get('polars', '?')}).",
            _grid(rows, [("dataset", "dataset"), ("rows", "rows"), ("file_mb", "file MB"), ("bare_read_s", "bare read s"),
                         ("ingest_s", "ingest s"), ("rows_per_s", "rows/s"), ("ratio_to_bare_read", "× bare read"),
                         ("parquet_write_s", "parquet write s"), ("rows_per_s_with_write", "rows/s with write")]),
            "Seconds per step:",
            _grid(rows, [("dataset", "dataset"), *((f"step_{k}", k) for k in steps)]),
            "Peak memory (RSS, a fresh process per file):",
            _grid(data.get("peak_memory", []), [
                ("rows", "rows"), ("file_mb", "file MB"), ("chunk_mb", "chunk MB"),
                ("ingest_peak_rss_mib", "ingest peak MiB"), ("ingest_s", "ingest s"),
                ("ingest_result_tables_mib", "result tables MiB"), ("bare_peak_rss_mib", "bare read peak MiB"),
                ("bare_s", "bare read s"), ("ingest_whole_file_peak_rss_mib", "whole-file ingest peak MiB")]),
        ])
    if name == "train":
        m = data["machine"]
        return "\n\n".join([
            f"{source}: {_num(data['data']['items'])} items, {_num(data['data']['train_interactions'])} training "
            f"interactions, batch size {data['batch_size']}, torch {m.get('torch')} on {m.get('cpus')} CPUs.",
            _grid(data["results"], [("model", "model"), ("train_examples", "training examples"),
                                    ("epoch_s", "epoch s"), ("train_examples_per_s", "examples/s"),
                                    ("eval_customers_per_s", "full-ranking customers/s"),
                                    ("peak_rss_mb", "peak RSS MB")]),
        ])
    if name == "ingest_dask":
        return "\n\n".join([
            f"{source} ({data['workers']}-worker `LocalCluster` on the same {data['machine']['cpus']}-CPU machine).",
            _grid([data], [("rows", "rows"), ("chunk_mb", "chunk MB"), ("local_s", "in process s"),
                           ("dask_s", "Dask s"), ("dask_to_local", "Dask / local"),
                           ("cluster_startup_s", "cluster start s"), ("identical_result", "identical result")]),
        ])
    raise ValueError(f"no table for bench/results/{name}.json (known: ingest, train, ingest_dask)")


# ---------------------------------------------------------------- the pipeline's graph, from dvc.yaml


def _interpolate(text: str, params: dict) -> str:
    def value(match: re.Match) -> str:
        found = _lookup(params, match.group(1).split("."))
        if found is _MISSING:
            raise ValueError(f"dvc.yaml: ${{{match.group(1)}}} is not in params.yaml")
        return str(found)

    return re.sub(r"\$\{([^}]+)\}", value, text)


def _paths(entries: list | None, params: dict) -> list[str]:
    names = [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]
    return [_interpolate(str(n), params).rstrip("/") for n in names]


def pipeline_graph() -> str:
    """The stages of dvc.yaml as a drawing: an arrow where a stage reads what another writes, unless a longer
    path of arrows already leads there."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    writes = {name: _paths([*(s.get("outs") or []), *(s.get("metrics") or []), *(s.get("plots") or [])], params)
              for name, s in stages.items()}
    edges = []
    for name, stage in stages.items():
        reads = _paths(stage.get("deps"), params)
        edges += [(upstream, name) for upstream, outs in writes.items()
                  if upstream != name and any(d == o or d.startswith(o + "/") or o.startswith(d + "/")
                                              for d in reads for o in outs)]
    import networkx as nx

    edges = list(nx.transitive_reduction(nx.DiGraph(edges)).edges)  # an arrow a longer path implies is left out
    rank: dict[str, int] = {}
    for name in stages:  # dvc.yaml lists a stage after the ones it reads
        rank[name] = max((rank[a] + 1 for a, b in edges if b == name and a in rank), default=0)
    columns = [[n for n in stages if rank[n] == r] for r in range(max(rank.values()) + 1)]
    return _svg(columns, edges, across=True, title="The stages of dvc.yaml")


# ---------------------------------------------------------------- the layers, from the import contracts


def layers() -> str:
    """The layers of the import contract in pyproject.toml, top first, and the imports between domains today."""
    import tomllib

    import grimp

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    spec = next(c for c in contracts["contracts"] if c["id"] == "layers")["layers"]
    rows = [[part.strip() for part in layer.replace("|", ":").split(":")] for layer in spec]
    rows = [r for r in rows if r != ["__main__"]]
    core = rows[-1]
    rows[-1] = ["core"]
    names = {m: ("core" if m in core else m) for row in rows for m in row} | {m: "core" for m in core}
    graph = grimp.build_graph("mapwise", include_external_packages=False, cache_dir=None)
    counts: dict[tuple[str, str], int] = {}
    for imp in graph.find_matching_direct_imports(import_expression="mapwise.** -> mapwise.**"):
        a, b = (names.get(m.split(".")[1]) if "." in m else None for m in (imp["importer"], imp["imported"]))
        if a and b and a != b and b != "core":
            counts[(a, b)] = counts.get((a, b), 0) + 1
    drawing = _svg(rows, [], across=False, title="mapwise's layers, top first", stacked=True)
    order = [n for row in rows for n in row]
    lines = ["| domain | imports today (direct imports between their modules; core left out) |", "| --- | --- |"]
    for a in order:
        below = [f"`{b}` ({counts[(a, b)]})" for b in order if (a, b) in counts]
        lines.append(f"| `{a}` | {', '.join(below) or 'core only'} |")
    return drawing + "\n\n" + "\n".join(lines)


# ---------------------------------------------------------------- drawings: inline SVG, no script, no network


_BOX_H, _GAP_X, _GAP_Y, _CHAR_W, _LANE = 30, 56, 30, 7.4, 7


def _svg(groups: list[list[str]], edges: list[tuple[str, str]], *, across: bool, title: str,
         stacked: bool = False) -> str:
    """Boxes in groups (columns when `across`, else rows, first on top) and arrows between them; theme colours."""
    width = {n: max(64.0, _CHAR_W * len(n) + 20) for g in groups for n in g}
    pos: dict[str, tuple[float, float]] = {}
    if across:
        col_w = [max(width[n] for n in g) for g in groups]
        height = max(len(g) for g in groups) * (_BOX_H + _GAP_Y)
        x = 10.0
        for g, w in zip(groups, col_w):
            top = (height - len(g) * (_BOX_H + _GAP_Y)) / 2 + _GAP_Y / 2
            for i, n in enumerate(g):
                pos[n] = (x + (w - width[n]) / 2, top + i * (_BOX_H + _GAP_Y))
            x += w + _GAP_X
        total_w, total_h = x - _GAP_X + 10, height
    else:
        row_w = [sum(width[n] for n in g) + 16 * (len(g) - 1) for g in groups]
        total_w = max(row_w) + 20
        for r, g in enumerate(groups):
            x = (total_w - row_w[r]) / 2
            for n in g:
                pos[n] = (x, 10 + r * (_BOX_H + _GAP_Y))
                x += width[n] + 16
        total_h = 10 + len(groups) * (_BOX_H + _GAP_Y) - _GAP_Y + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}" '
             f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" style="max-width:{total_w:.0f}px;width:100%">',
             f"<title>{title}</title>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="currentColor"/></marker></defs>',
             '<g fill="none" stroke="currentColor" stroke-width="1.2" opacity="0.75">']
    column = {n: i for i, g in enumerate(groups) for n in g}
    lanes = 0
    for a, b in edges:
        (ax, ay), (bx, by) = pos[a], pos[b]
        x1, y1, x2, y2 = ax + width[a], ay + _BOX_H / 2, bx, by + _BOX_H / 2
        if across and column[b] - column[a] > 1:  # over the columns between, never through their boxes
            lanes += 1
            lane, xa, xb = -_LANE * lanes, x1 + _GAP_X / 2 - 2 * lanes % 12, x2 - _GAP_X / 2 + 2 * lanes % 12
            d = f"M{x1:.1f},{y1:.1f} H{xa:.1f} V{lane:.1f} H{xb:.1f} V{y2:.1f} H{x2:.1f}"
        else:
            mid = (x1 + x2) / 2
            d = f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        parts.append(f'<path d="{d}" marker-end="url(#arrow)"/>')
    top = -_LANE * lanes - 6 if lanes else 0
    parts[0] = parts[0].replace(f'viewBox="0 0 {total_w:.0f} {total_h:.0f}"',
                                f'viewBox="0 {top:.0f} {total_w:.0f} {total_h - top:.0f}"')
    if stacked:  # one arrow between consecutive rows: "may import what is below"
        for r in range(len(groups) - 1):
            y1 = 10 + r * (_BOX_H + _GAP_Y) + _BOX_H + 3
            parts.append(f'<path d="M{total_w / 2:.1f},{y1:.1f} v{_GAP_Y - 6}" marker-end="url(#arrow)"/>')
    parts.append("</g>")
    for n, (x, y) in pos.items():
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width[n]:.1f}" height="{_BOX_H}" rx="6" '
                     'fill="none" stroke="currentColor" stroke-width="1.2"/>')
        parts.append(f'<text x="{x + width[n] / 2:.1f}" y="{y + _BOX_H / 2 + 4:.1f}" text-anchor="middle" '
                     f'font-family="monospace" font-size="12" fill="currentColor">{n}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


GENERATORS = {
    "params": params_reference,
    "mapping-keys": mapping_keys,
    "functions": expression_functions,
    "contracts": contracts,
    "endpoints": endpoints,
    "bench": bench,
    "pipeline-graph": pipeline_graph,
    "layers": layers,
}
