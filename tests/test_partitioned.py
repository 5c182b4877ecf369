"""A table as a folder of Parquet part files, as Spark and CDP exports write it: Hive-style
``key=value`` folders, ``_SUCCESS`` and ``.crc`` files beside the parts."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cdp.io import locate_tables
from cdp.validation import load_contract, validate_folder
from conftest import AS_OF
from features.build import build_features
from features.manifest import file_digest
from nextbest.subject import identity_values
from test_cli import nextbest

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`


def _spark_like(frame: pd.DataFrame, folder, parts: int, key: str | None = None) -> None:
    """Write ``frame`` as Spark does: part files (under ``key=value`` folders when ``key`` is
    a derived column), a ``_SUCCESS`` marker and a ``.crc`` beside each part."""
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").write_text("")
    groups = frame.groupby(frame[key]) if key else [(None, frame)]
    for value, group in groups:
        where = folder / f"{key}={value}" if key else folder
        where.mkdir(exist_ok=True)
        rows = group.drop(columns=[key]) if key else group
        for k in range(parts):
            name = f"part-{k:05d}-c000.snappy.parquet"
            rows.iloc[k::parts].to_parquet(where / name, index=False)
            (where / f".{name}.crc").write_bytes(b"\x00crc")


@pytest.fixture(scope="module")
def partitioned(small_world_dir, tmp_path_factory):
    """The small world with orders in Hive folders by year, events and identities in parts."""
    folder = tmp_path_factory.mktemp("partitioned") / "world"
    shutil.copytree(small_world_dir, folder, ignore=shutil.ignore_patterns("truth"))
    orders = pd.read_parquet(folder / "orders.parquet")
    year = orders["ordered_at"].dt.year
    _spark_like(orders.assign(ordered_year=year), folder / "orders", 2, key="ordered_year")
    _spark_like(pd.read_parquet(folder / "events.parquet"), folder / "events", 3)
    _spark_like(pd.read_parquet(folder / "identities.parquet"), folder / "identities", 2)
    for name in ("orders", "events", "identities"):
        (folder / f"{name}.parquet").unlink()
    return folder


def test_a_folder_of_part_files_loads_as_the_one_file(partitioned, small_world_dir):
    files, problems = locate_tables(partitioned)
    assert problems == [] and files["orders"].is_dir()
    ours, one = load_contract(partitioned), load_contract(small_world_dir)
    for name, frame in one.items():
        mine = getattr(ours, name)
        assert set(mine.columns) - set(frame.columns) <= {"ordered_year"}  # the Hive key
        key = list(frame.columns)
        mine = mine[key].sort_values(key).reset_index(drop=True)
        theirs = frame.sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, theirs, check_categorical=False, obj=name)


def test_features_from_part_files_equal_the_one_file_build(partitioned, small_world_dir):
    ours = build_features(partitioned, as_of=AS_OF)
    one = build_features(small_world_dir, as_of=AS_OF)
    pd.testing.assert_frame_equal(ours.customers, one.customers, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(ours.pairs, one.pairs, check_exact=False, rtol=1e-9)


def test_the_cli_validates_and_builds_a_partitioned_folder(partitioned, tmp_path):
    assert nextbest("validate", str(partitioned)).returncode == 0
    assert nextbest("validate", str(partitioned), "--partitions", "3").returncode == 0
    out = tmp_path / "features"
    done = nextbest(
        "features", "--data", str(partitioned), "--as-of", "2025-06-30", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert inputs["orders"]["file"] == "orders/"
    assert inputs["orders"]["sha256"] == file_digest(partitioned / "orders")


def test_a_part_changed_or_renamed_changes_the_tables_digest(partitioned, tmp_path):
    copy = tmp_path / "events"
    shutil.copytree(partitioned / "events", copy)
    before = file_digest(copy)
    (copy / "_SUCCESS").write_text("bookkeeping is not data")
    assert file_digest(copy) == before
    part = copy / "part-00001-c000.snappy.parquet"
    part.rename(copy / "part-00009-c000.snappy.parquet")
    renamed = file_digest(copy)
    assert renamed != before
    frame = pd.read_parquet(copy / "part-00000-c000.snappy.parquet")
    frame.iloc[1:].to_parquet(copy / "part-00000-c000.snappy.parquet", index=False)
    assert file_digest(copy) not in (before, renamed)


def test_an_empty_or_doubled_table_folder_is_named(partitioned, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(partitioned, folder)
    shutil.rmtree(folder / "events")
    (folder / "events").mkdir()
    (folder / "events" / "_SUCCESS").write_text("")
    pd.read_parquet(partitioned / "identities").to_parquet(folder / "identities.parquet")
    _, report = validate_folder(folder)
    problems = {v.table: v.problem for v in report.violations}
    assert problems["events"] == "folder events/ has no .parquet part files"
    assert "both identities.parquet and identities/" in problems["identities"]


def test_identities_in_part_files_are_found_for_a_data_subject(partitioned, small_world_dir):
    one = pd.read_parquet(small_world_dir / "identities.parquet")
    customer = one["customer_id"].iloc[0]
    mine = set(one.loc[one["customer_id"] == customer, "id_value"])
    assert identity_values(partitioned, customer) == mine != set()
