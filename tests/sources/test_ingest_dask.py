"""Ingest on a Dask cluster (ingest.engine: dask): a LocalCluster of 2 worker processes maps the chunks and
the result is exactly the in-process one: tables, quarantine with reasons and lines, report."""

from __future__ import annotations

import sys
from dataclasses import replace

import polars as pl
import pytest
import yaml

from conftest import KEY, ORDERS_HEADER, assert_balanced, orders_mapping, write
from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.params import DaskParams, IngestParams
from mapwise.sources.cluster import in_flight, partition_executor
from mapwise.sources.ingest import DUPLICATE_ROW, ingest
from mapwise.sources.mapping.load import parse_mapping
from test_hostile_files import LIMITS, hostile_file, row
from test_ingest_chunks import assert_same
from test_pipeline import _project, _run


@pytest.fixture(scope="module")
def cluster():
    with partition_executor(DaskParams(workers=2)) as executor:
        yield executor


def _both(raw_dir, executor, limits, **mapping):
    mappings = [parse_mapping(orders_mapping(**mapping), "orders.yaml")]
    here = ingest(raw_dir, mappings, KEY, limits)
    there = ingest(raw_dir, mappings, KEY, limits, executor=executor)
    for result in (here, there):
        result.report.pop("timestamps")  # the second run's "now" differs
    return here, there


@pytest.mark.parametrize("seed", range(3))
def test_a_damaged_file_ingests_on_the_cluster_exactly_as_here(tmp_path, cluster, seed):
    content, _ = hostile_file(seed)
    write(tmp_path / "orders.csv", content)
    here, there = _both(tmp_path, cluster, replace(LIMITS, chunk_bytes=200))
    assert_balanced(there)
    assert_same(there, here)
    assert there.quarantine[c.EVENTS].height > 0  # the hostile rows are there, with their reasons


def test_duplicates_across_partitions_of_several_files_keep_their_first_line(tmp_path, cluster):
    write(tmp_path / "orders-1.csv", "\n".join([ORDERS_HEADER, *(row(n) for n in range(60))]) + "\n")
    write(tmp_path / "orders-2.csv", "\n".join([ORDERS_HEADER, row(7), row(61), row(59)]) + "\n")
    here, there = _both(tmp_path, cluster, replace(LIMITS, chunk_bytes=150))
    assert_same(there, here)
    dups = there.quarantine[c.EVENTS].filter(pl.col(c.Q_REASON) == DUPLICATE_ROW)
    assert dups[c.Q_VALUE].to_list() == ["first at orders-1.csv:9", "first at orders-1.csv:61"]
    assert [f["rows"] for f in there.report["sources"]["orders"]["files"]] == [60, 3]


def test_a_mistake_found_on_a_worker_reaches_the_user_as_the_same_one_line_error(tmp_path, cluster):
    write(tmp_path / "orders.csv", "\n".join([ORDERS_HEADER, row(1)]) + "\n")
    mapping = orders_mapping(casts={"qty": "int", "price": "float", "missing_column": "int"})
    with pytest.raises(MapwiseError) as here:
        ingest(tmp_path, [parse_mapping(mapping, "orders.yaml")], KEY, LIMITS)
    with pytest.raises(MapwiseError) as there:
        ingest(tmp_path, [parse_mapping(mapping, "orders.yaml")], KEY, LIMITS, executor=cluster)
    assert str(there.value) == str(here.value) and "missing_column" in str(here.value)


def test_partitions_in_flight_follow_the_cluster_threads(cluster):
    assert in_flight(None) == 1
    assert in_flight(cluster) == 4  # 2 workers x 1 thread, twice over


def test_an_unreachable_scheduler_is_one_line_naming_the_param():
    with pytest.raises(MapwiseError, match=r"^ingest.dask.address: no Dask scheduler answered at tcp://127.0.0.1:9"):
        with partition_executor(DaskParams(address="tcp://127.0.0.1:9", connect_timeout_s=2)):
            pass


def test_engine_and_cluster_are_params():
    p = IngestParams(raw_dir="raw", sources=["a"], engine="dask", dask={"address": "tcp://h:8786"})
    assert p.dask.address == "tcp://h:8786" and p.dask.workers == 2
    with pytest.raises(ValueError):
        IngestParams(raw_dir="raw", sources=["a"], engine="spark")


def test_the_stage_runs_on_a_local_cluster_and_writes_what_the_local_engine_writes(tmp_path):
    outputs = {}
    for engine in ("local", "dask"):
        root = _project(tmp_path / engine, lambda p, e=engine: p["ingest"].update(engine=e, chunk_mb=0.0001))
        done = _run([sys.executable, "-m", "pipelines.ingest"], root)
        assert done.returncode == 0, done.stderr
        outputs[engine] = {f"{kind}/{name}": pl.read_parquet(root / "data" / kind / f"{name}.parquet")
                           for kind in ("canonical", "quarantine") for name in ("events", "items", "customers")}
        report = yaml.safe_load((root / "reports/ingest.json").read_text())
        assert "chunks" not in report and report["sources"]["orders"]["rows_read"] == 4
        outputs[engine]["report"] = report["sources"]
    assert outputs["dask"].pop("report") == outputs["local"].pop("report")
    for name, frame in outputs["local"].items():
        assert outputs["dask"][name].equals(frame), name
    assert outputs["dask"]["quarantine/events"].height == 1
