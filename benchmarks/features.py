"""Feature build at shop scale (default: 1M customers, about 13M order lines, 32M events).

Each stage runs in its own process and reports its own peak memory (``VmHWM``, not the
``ru_maxrss`` of ``wait4``, which counts the parent's memory at ``fork``). Stages:

- floor: read the order and event columns the build uses, and one group-by over
  customer_id for each table (Polars) — no feature can be cheaper than this;
- plain polars: a reference, part of the customer table written the usual way (one
  streaming Polars query per table grouped by customer_id);
- build: the full customer + pair build from the Parquet folder, with population
  parameters given (no lifetimes fits);
- one build: the population parameters fitted, then the build: what ``nextbest features``
  does after validating;
- 8 partitions: the same in 8 hash partitions of customers
  (:func:`features.partitions.build_partitions`, ``nextbest features --partitions 8``);
- purchase history: the purchase-history stage alone (RFM measures, the lifetimes summary
  columns, purchase intervals), :func:`features.purchases.purchase_history`;
- fits: BG/NBD + Gamma-Gamma on weighted unique rows (features.clv.fit_lifetimes);
- plain fits: the same two models fitted by lifetimes on one row per customer;
- lifetimes summary: ``lifetimes.utils.summary_data_from_transaction_data`` on the same
  orders (pandas), the usual way to get frequency / recency / T / monetary value.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

AS_OF = "2025-06-30"
WORLD_SEED = 1
PARTITIONS = 8


def _world(customers: int) -> Path:
    """A generated world in data/bench/ (kept between runs: generating 1M takes ~2 min)."""
    folder = Path("data/bench") / f"world-{customers}"
    meta = folder / "truth" / "meta.json"
    if not (meta.is_file() and json.loads(meta.read_text())["seed"] == WORLD_SEED):
        from nextbest.cli import main

        print(f"generating a {customers:,}-customer world in {folder} (once)…", flush=True)
        code = main(
            [
                "generate",
                "--customers",
                str(customers),
                "--seed",
                str(WORLD_SEED),
                "--as-of",
                AS_OF,
                "--out",
                str(folder),
                "--overwrite",
            ]
        )
        if code:
            raise SystemExit(code)
    return folder


ORDER_COLUMNS = ["customer_id", "order_id", "ordered_at", "product_id", "quantity", "amount"]
EVENT_COLUMNS = ["customer_id", "anonymous_id", "occurred_at", "source", "event_type", "sentiment"]


def _stage_floor(folder: Path) -> str:
    """Read every order and event column the build uses and group each table by customer.

    Each column is counted per customer: Polars reads only the columns an aggregation
    needs, so a floor that selects columns without aggregating them reads two of six.
    """
    import polars as pl

    plans = [
        pl.scan_parquet(folder / f"{table}.parquet")
        .select(columns)
        .group_by("customer_id")
        .agg(pl.exclude("customer_id").count())
        for table, columns in (("orders", ORDER_COLUMNS), ("events", EVENT_COLUMNS))
    ]
    a, b = pl.collect_all(plans, engine="streaming")
    return f"{a.height:,} + {b.height:,} groups"


def _stage_plain_polars(folder: Path) -> str:
    """A reference: part of the customer table written the usual way in Polars, one lazy
    streaming query per table grouped by ``customer_id`` (RFM and purchase gaps from the
    (customer, day) table; windowed event counts and sentiment with cookie/device
    stitching). No pairs, trends, returns, segments or lifetimes predictions."""
    import polars as pl

    from cdp.contract import STITCHABLE_ID_TYPES
    from cdp.time import as_utc

    as_of = as_utc(AS_OF)
    orders = pl.scan_parquet(folder / "orders.parquet")
    days = (
        orders.filter((pl.col("ordered_at") <= as_of) & (pl.col("quantity") > 0))
        .group_by("customer_id", pl.col("ordered_at").dt.truncate("1d").alias("day"))
        .agg(pl.col("amount").sum(), pl.col("order_id").n_unique().alias("orders"))
    )
    gap = pl.col("day").sort().diff().dt.total_days()
    purchases = days.group_by("customer_id").agg(
        pl.len().alias("purchase_days"),
        pl.col("day").min().alias("first_day"),
        pl.col("day").max().alias("last_day"),
        pl.col("amount").sum(),
        pl.col("orders").sum(),
        gap.mean().alias("gap_mean"),
        gap.median().alias("gap_median"),
        gap.std().alias("gap_std"),
    )
    links = (
        pl.scan_parquet(folder / "identities.parquet")
        .filter(pl.col("id_type").is_in(STITCHABLE_ID_TYPES))
        .select(pl.col("id_value").alias("anonymous_id"), pl.col("customer_id").alias("owner"))
    )
    seen = pl.scan_parquet(folder / "events.parquet").filter(pl.col("occurred_at") <= as_of)
    columns = ["occurred_at", "event_type", "sentiment"]
    anonymous = seen.filter(pl.col("customer_id").is_null()).join(links, on="anonymous_id")
    events = pl.concat(
        [
            seen.filter(pl.col("customer_id").is_not_null()).select("customer_id", *columns),
            anonymous.select(pl.col("owner").alias("customer_id"), *columns),
        ]
    )
    age = (pl.lit(as_of) - pl.col("occurred_at")).dt.total_days()
    kinds = [
        "page_view",
        "product_view",
        "email_open",
        "email_click",
        "ticket_opened",
        "chat_message",
    ]
    aggs = [pl.col("occurred_at").max().alias("last_event_at")]
    for w in (7, 30, 90):
        aggs += [
            ((pl.col("event_type") == kind) & (age < w)).sum().alias(f"{kind}_{w}d")
            for kind in kinds
        ]
        aggs += [
            pl.col("sentiment").filter(age < w).mean().alias(f"sentiment_mean_{w}d"),
            pl.col("sentiment").filter(age < w).min().alias(f"sentiment_min_{w}d"),
        ]
    a, b = pl.collect_all([purchases, events.group_by("customer_id").agg(aggs)], engine="streaming")
    return f"{a.height:,} + {b.height:,} customers"


def _population(folder: Path):
    """Population parameters for the build, fitted once and kept next to the world."""
    from features.build import fit_population

    cache = folder.parent / f"{folder.name}.population.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    population = fit_population(folder, as_of=AS_OF)
    cache.write_bytes(pickle.dumps(population))
    return population


def _stage_population(folder: Path) -> str:
    population = _population(folder)
    return f"as of {population.as_of:%Y-%m-%d}"


def _stage_build(folder: Path) -> str:
    from features.build import build_features

    population = _population(folder)
    start = time.perf_counter()
    built = build_features(folder, as_of=AS_OF, population=population)
    _stage_build.seconds = time.perf_counter() - start
    return f"{len(built.customers):,} customers, {len(built.pairs):,} pairs"


def _stage_one_build(folder: Path) -> str:
    from features.build import build_features, fit_population

    population = fit_population(folder, as_of=AS_OF)
    built = build_features(folder, as_of=AS_OF, population=population)
    return f"{len(built.customers):,} customers, {len(built.pairs):,} pairs"


def _stage_partitions(folder: Path) -> str:
    from features.partitions import build_partitions

    rows = [0, 0]
    for part in build_partitions(folder, as_of=AS_OF, partitions=PARTITIONS):
        rows[0] += len(part.customers)
        rows[1] += len(part.pairs)
    return f"{rows[0]:,} customers, {rows[1]:,} pairs"


def _stage_purchase_history(folder: Path) -> str:
    """The orders read into memory first, as the lifetimes stage reads them before its clock."""
    from cdp.time import as_utc
    from features.config import FeatureConfig
    from features.inputs import as_inputs
    from features.purchases import daily_purchases, purchase_history

    as_of, config = as_utc(AS_OF), FeatureConfig()
    orders = as_inputs(folder).orders.collect().lazy()
    start = time.perf_counter()
    summary = purchase_history(daily_purchases(orders, as_of=as_of), as_of=as_of, config=config)
    _stage_purchase_history.seconds = time.perf_counter() - start
    return f"{summary.height:,} customers, {summary.width} columns"


def _summary(folder: Path):
    from cdp.time import as_utc
    from features.config import FeatureConfig
    from features.inputs import as_inputs
    from features.purchases import daily_purchases, purchase_history

    as_of = as_utc(AS_OF)
    daily = daily_purchases(as_inputs(folder).orders, as_of=as_of)
    return purchase_history(daily, as_of=as_of, config=FeatureConfig())


def _stage_fits(folder: Path) -> str:
    import lifetimes  # noqa: F401 - imported before the clock starts, as for the plain fits

    from features.clv import fit_lifetimes

    summary = _summary(folder)
    start = time.perf_counter()
    params = fit_lifetimes(summary, penalizer=0.001)
    _stage_fits.seconds = time.perf_counter() - start
    return f"r={params.bgnbd['r']:.3f} p={params.gamma_gamma['p']:.3f}"


def _stage_plain_fits(folder: Path) -> str:
    import polars as pl
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    summary = _summary(folder)
    repeat = summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
    start = time.perf_counter()
    bg = BetaGeoFitter(penalizer_coef=0.001).fit(
        summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy()
    )
    gg = GammaGammaFitter(penalizer_coef=0.001).fit(
        repeat["frequency"].to_numpy(), repeat["monetary_value"].to_numpy()
    )
    _stage_plain_fits.seconds = time.perf_counter() - start
    return f"r={bg.params_['r']:.3f} p={gg.params_['p']:.3f}"


def _stage_lifetimes_summary(folder: Path) -> str:
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data

    orders = pd.read_parquet(
        folder / "orders.parquet", columns=["customer_id", "ordered_at", "quantity", "amount"]
    )
    start = time.perf_counter()
    bought = orders[orders["quantity"] > 0].assign(
        ordered_at=lambda f: f["ordered_at"].dt.tz_localize(None)
    )
    summary = summary_data_from_transaction_data(
        bought,
        "customer_id",
        "ordered_at",
        monetary_value_col="amount",
        observation_period_end=AS_OF,
        freq="D",
    )
    _stage_lifetimes_summary.seconds = time.perf_counter() - start
    return f"{len(summary):,} customers"


STAGES = {
    "population": _stage_population,
    "floor": _stage_floor,
    "plain polars": _stage_plain_polars,
    "build": _stage_build,
    "one build": _stage_one_build,
    f"{PARTITIONS} partitions": _stage_partitions,
    "purchase history": _stage_purchase_history,
    "fits": _stage_fits,
    "plain fits": _stage_plain_fits,
    "lifetimes summary": _stage_lifetimes_summary,
}


def _child(stage: str, folder: str, stages: dict | None = None) -> None:
    """Entry point of a stage process: print its time, note and peak memory as JSON."""
    fn = (stages or STAGES)[stage]
    start = time.perf_counter()
    note = fn(Path(folder))
    seconds = getattr(fn, "seconds", time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "note": note, "peak_mb": _own_peak_mb()}))


def _own_peak_mb() -> float:
    """This process's own high-water mark of resident memory, in MB: ``VmHWM`` of
    ``/proc/self/status``, which belongs to the memory map ``exec`` created. Not
    ``ru_maxrss``: on Linux that counts the parent's resident pages at ``fork``, before the
    ``exec`` (a 13 MB ``python -c pass`` reported 1,514 MB from a 1.5 GB parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: the peak-memory figure needs Linux")


def _measure(stage: str, folder: Path, module: str = "benchmarks.features") -> dict:
    """Run ``stage`` in a fresh interpreter: its time and its own peak memory (VmHWM).

    A fresh process, not a fork: Polars' thread pool does not survive ``fork``.
    """
    child = subprocess.run(
        [sys.executable, "-m", module, stage, str(folder)], stdout=subprocess.PIPE, text=True
    )
    if child.returncode != 0:
        raise SystemExit(f"benchmark stage {stage!r} failed")
    return json.loads(child.stdout.strip().splitlines()[-1])


def run(customers: int) -> None:
    folder = _world(customers)
    _measure("population", folder)  # fitted once, outside the timed build
    print(f"\nfeatures at {customers:,} customers ({folder}), as of {AS_OF}")
    print(f"{'stage':>18} {'seconds':>8} {'peak MB':>8}  note")
    results = {}
    for stage in list(STAGES)[1:]:
        results[stage] = r = _measure(stage, folder)
        print(f"{stage:>18} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f}  {r['note']}", flush=True)
    build = results["build"]["seconds"]
    one, parts = results["one build"], results[f"{PARTITIONS} partitions"]
    history = results["purchase history"]["seconds"]
    print(
        f"{PARTITIONS} partitions / one build: {parts['seconds'] / one['seconds']:.2f}x time"
        f" (goal <= 1.3x), peak {parts['peak_mb']:.0f} MB against {one['peak_mb']:.0f} MB"
        f" (goal <= 1536 MB); "
        f"lifetimes summary / purchase history: "
        f"{results['lifetimes summary']['seconds'] / history:.1f}x (goal >= 4x); "
        f"build / floor: {build / results['floor']['seconds']:.1f}x (goal <= 6x); "
        f"fits / plain fits: "
        f"{results['fits']['seconds'] / results['plain fits']['seconds']:.2f}x (goal <= 1x); "
        f"plain polars (part of the features) / build: "
        f"{results['plain polars']['seconds'] / build:.2f}x"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _child(sys.argv[1], sys.argv[2])
    else:
        run(int(os.environ.get("BENCH_FEATURE_CUSTOMERS", "1000000")))
