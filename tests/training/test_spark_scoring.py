"""`nextbest score --engine spark` (local[2], a real session) writes the scores of
`nextbest score`: same rows, same values, same purpose limitation."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from test_cli import nextbest

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`

KEYS = {
    "churn": ["customer_id"],
    "clv": ["customer_id"],
    "replenishment": ["customer_id", "product_id"],
}


def _scores(folder, name: str) -> pd.DataFrame:
    path = folder / name if (folder / name).is_dir() else folder / f"{name}.parquet"
    frame = pd.read_parquet(path).sort_values(KEYS[name], ignore_index=True)
    # Spark keeps microseconds: compare every timestamp at that precision
    stamps = [c for c in frame.columns if str(frame[c].dtype).startswith("datetime64")]
    return frame.assign(
        **{c: frame[c].dt.floor("us").astype("datetime64[us, UTC]") for c in stamps}
    )


def test_spark_scores_equal_the_single_machine_scores(world, small_world_dir, tmp_path):
    common = ["--features", str(world / "features"), "--data", str(small_world_dir)]
    common += ["--mlruns", str(world / "mlruns")]
    one = nextbest("score", *common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    spark = ("--engine", "spark", "--spark-master", "local[2]", "--partitions", "3")
    done = nextbest(
        "score",
        *common,
        "--out",
        str(tmp_path / "spark"),
        *spark,
        env={"PYSPARK_PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in KEYS:
        mine, theirs = _scores(tmp_path / "spark", name), _scores(tmp_path / "one", name)
        mine = mine[list(theirs.columns)].astype(theirs.dtypes.to_dict())
        pd.testing.assert_frame_equal(mine, theirs, check_exact=False, rtol=1e-9, obj=name)
        assert len(mine) > 0
    meta = json.loads((tmp_path / "spark" / "scores.json").read_text())
    single = json.loads((tmp_path / "one" / "scores.json").read_text())
    assert meta.pop("engine") == "spark" and meta.pop("partitions") == 3
    assert meta == single  # rows, rows withheld for consent, models, settings
    assert sum(meta["withheld"]["rows"].values()) > 0
    assert not (tmp_path / "spark" / "_withheld").exists()
