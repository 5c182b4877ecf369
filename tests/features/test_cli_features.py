"""``nextbest features``: a snapshot with a manifest, byte-identical on a rerun."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_tables, write_folder
from features.config import FeatureConfig
from features.manifest import describe
from test_cli import nextbest


def test_features_snapshot_and_identical_rerun(small_world_dir, tmp_path):
    args = ["features", "--data", str(small_world_dir), "--as-of", "2025-06-30"]
    first = nextbest(*args, "--out", str(tmp_path / "a"))
    second = nextbest(*args, "--out", str(tmp_path / "b"))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    for name in ("customers.parquet", "pairs.parquet", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    meta = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert meta["as_of"] == "2025-06-30T00:00:00+00:00"
    assert meta["rows"]["customers"] > 0 and meta["rows"]["pairs"] > 0
    assert set(meta["inputs"]) >= {"customers", "orders", "events"}
    assert all(len(i["sha256"]) == 64 for i in meta["inputs"].values())
    undocumented = [c for t in meta["columns"].values() for c, doc in t.items() if not doc]
    assert undocumented == []
    assert meta["population"]["lifetimes"]["bgnbd"]["r"] > 0


def test_features_refuses_an_invalid_contract(tmp_path):
    tables = tiny_tables()
    tables["orders"].loc[0, "quantity"] = 0
    result = nextbest(
        "features",
        "--data",
        str(write_folder(tables, tmp_path / "bad")),
        "--as-of",
        "2024-06-30",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2
    assert "orders.quantity" in result.stderr
    assert not (tmp_path / "out").exists()


def test_every_column_is_described():
    docs = describe(FeatureConfig(engagement_windows=(3, 10)))
    assert "views_3d" in docs["customers"] and "stitched_events_10d" in docs["customers"]


@pytest.mark.parametrize("as_of", ["2020-01-01", "2030-01-01"], ids=["before", "after"])
def test_features_refuses_an_as_of_outside_the_orders(small_world_dir, tmp_path, as_of):
    out = tmp_path / "features"
    args = ("features", "--data", str(small_world_dir), "--as-of", as_of, "--out", str(out))
    refused = nextbest(*args)
    assert refused.returncode == 2 and not out.exists()
    line = refused.stderr.strip().splitlines()[-1]  # after the stage lines, one error line
    assert line.startswith("nextbest: error: --as-of") and "unexpected" not in refused.stderr
    assert f"--as-of {as_of}" in line and "--allow-empty" in line
    assert ("before the first order" if as_of < "2025" else "after the last order") in line
    allowed = nextbest(*args, "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
