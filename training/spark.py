"""Batch scoring on Spark: :func:`training.scoring.score_frames` on each customer partition.

The champions are loaded once on the driver and shipped to the executors with the task
(one copy per executor process); each customer partition brings its customer features,
its pairs and its consent records, so the purpose limitation (no marketing score without
marketing consent in force at the snapshot's as-of) is applied where the scores are made.
The tables and ``scores.json`` are those of ``nextbest score``, written as Parquet parts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import polars as pl

from cdp.errors import BadInputError
from cdp.io import type_table
from cdp.privacy import consent_in_force
from cdp.time import as_utc
from features.config import FeatureConfig
from features.io import restore_dtypes
from features.spark import (
    KEY,
    arrow_schema,
    parquet_tables,
    per_customer_partition,
    read_table,
    tagged_by_customer,
)
from training.registry import PURPOSES, REGISTERED
from training.scoring import check_settings, load_champions, score_frames, trained_with

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

WITHHELD = "_withheld"


def _table(snapshot: Path, name: str) -> Path:
    folder = snapshot / name
    return folder if folder.is_dir() else snapshot / f"{name}.parquet"


def score_on_spark(
    spark: SparkSession,
    snapshot: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    partitions: int | None = None,
) -> dict:
    """Score a feature snapshot with the champions (of the configured registry) on Spark.

    Parameters
    ----------
    spark : SparkSession
        A session (:func:`features.spark.session`).
    snapshot : str or os.PathLike
        A feature snapshot (``nextbest features``, any engine).
    data : str or os.PathLike
        The contract folder whose ``consents`` decide the purpose limitation (Parquet).
    out : str or os.PathLike
        A folder for ``churn/``, ``clv/``, ``replenishment/`` (Parquet parts).
    partitions : int, optional
        Customer partitions (``spark.sql.shuffle.partitions`` when not given).

    Returns
    -------
    dict
        What ``scores.json`` holds (the caller writes it): as-of, model versions, rows
        written and withheld, settings.
    """
    snapshot, out = Path(snapshot), Path(out)
    if not (snapshot / "manifest.json").is_file():
        raise BadInputError(f"{snapshot}: not a feature snapshot (no manifest.json)")
    meta = json.loads((snapshot / "manifest.json").read_text())
    as_of = as_utc(meta["as_of"])
    config = FeatureConfig.from_dict(meta["config"])
    dtypes = meta.get("dtypes", {})
    consents = parquet_tables(Path(data)).get("consents")
    if consents is None:
        raise BadInputError("score: the consents table is needed (marketing scores need consent)")
    champions, versions = load_champions()
    check_settings(config, trained_with(versions), f"the snapshot {snapshot}")
    frames = {
        name: spark.read.parquet(str(_table(snapshot, name))) for name in ("customers", "pairs")
    }
    frames["consents"] = read_table(spark, consents, "consents").select(
        "customer_id", "purpose", "granted", "recorded_at"
    )

    def work(tables: dict[str, pl.DataFrame]) -> dict[str, pd.DataFrame]:
        customers, pairs = (
            restore_dtypes(tables[name].to_pandas(), dtypes.get(name, []))
            if name in tables
            else _empty(dtypes.get(name, []))
            for name in ("customers", "pairs")
        )
        scored = score_frames(
            customers, pairs, as_of=as_of, champions=champions, versions=versions, config=config
        )
        records = tables["consents"].to_pandas() if "consents" in tables else None
        records = type_table("consents", records)[0] if records is not None else None
        allowed = pd.Index([]) if records is None else consent_in_force(records, "marketing", as_of)
        withheld = {}
        for name, frame in scored.items():
            if PURPOSES[name] == "marketing":
                keep = frame["customer_id"].isin(allowed).to_numpy()
                withheld[name] = int((~keep).sum())
                scored[name] = frame[keep]
        scored[WITHHELD] = pd.DataFrame(
            {"table": list(withheld), "rows": list(withheld.values())}
        ).astype({"table": "str", "rows": "int64"})
        return scored

    # the output types: the champions on a few customers with pairs, on the driver
    sample_ids = frames["pairs"].select("customer_id").limit(20)
    sample = {
        name: frames[name].join(sample_ids, "customer_id", "left_semi").limit(200).toArrow()
        for name in ("customers", "pairs", "consents")
    }
    shapes = work({name: pl.from_arrow(table) for name, table in sample.items()})
    schemas = {name: arrow_schema(frame) for name, frame in shapes.items()}
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    tagged = tagged_by_customer(frames).repartition(n, KEY)
    rows = per_customer_partition(tagged, work, schemas, out)
    counted = spark.read.parquet(str(out / WITHHELD)).groupBy("table").sum("rows").collect()
    shutil.rmtree(out / WITHHELD)
    del rows[WITHHELD]
    withheld = {name: 0 for name in rows if PURPOSES[name] == "marketing"}
    withheld |= {name: int(total) for name, total in counted}
    return {
        "as_of": as_of.isoformat(),
        "models": {REGISTERED[k]: v for k, v in versions.items()},
        "rows": rows,
        "withheld": {
            "reason": "no marketing consent in force at as_of (the models serve marketing)",
            "rows": withheld,
        },
        "config": meta["config"],
        "engine": "spark",
        "partitions": n,
    }


def _empty(dtypes: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in dtypes})
