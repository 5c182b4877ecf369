"""Commands on contract folders: generate a world, import CDNOW, validate, build features."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cdp.errors import BadInputError
from cdp.time import Moment
from nextbest.cli.base import (
    AsOf,
    Customers,
    Engine,
    EngineName,
    Format,
    Overwrite,
    Partitions,
    Seed,
    SparkMaster,
    Stages,
    TableFormat,
    app,
    champions_settings,
    err_console,
    import_app,
    out_console,
    parse_as_of,
    spark_session,
)

if TYPE_CHECKING:
    from cdp.world.config import WorldConfig
    from cdp.world.generate import World


class Shop(StrEnum):
    """``generate --shop``: which shop to simulate."""

    gadgets = "gadgets"
    grocery = "grocery"


#: Days of history of a grocery world (a year of weekly trips).
GROCERY_HISTORY = 365


def write_world(world: World, out: Path, fmt: str, overwrite: bool, **meta) -> None:
    """Write a world's contract tables and truth to ``out`` (atomically)."""
    from cdp.io import atomic_folder, write_tables

    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_tables(world.tables, tmp, fmt)  # type: ignore[arg-type]
        write_tables(world.truth, tmp / "truth", "parquet")
        _write_meta(world.config, tmp, **meta)


def write_world_in_chunks(
    config: WorldConfig, chunk: int, out: Path, overwrite: bool
) -> dict[str, int]:
    """Generate a world ``chunk`` customers at a time
    (:func:`cdp.world.generate.generate_chunks`) and write each chunk as it comes: each table
    a folder of part files, one per chunk (``products.parquet`` once), the truth likewise
    under ``truth/``; atomically. Returns the rows per table."""
    from cdp.io import atomic_folder, write_table
    from cdp.world.generate import generate_chunks

    rows: dict[str, int] = {}
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for k, world in enumerate(generate_chunks(config, chunk)):
            for where, tables in ((tmp, world.tables), (tmp / "truth", world.truth)):
                for name, frame in tables.items():
                    if name == "products":
                        if k == 0:
                            write_table(frame, where / "products.parquet")
                            rows[name] = len(frame)
                        continue
                    (where / name).mkdir(parents=True, exist_ok=True)
                    write_table(frame, where / name / f"part-{k:05d}.parquet")
                    if where == tmp:
                        rows[name] = rows.get(name, 0) + len(frame)
        _write_meta(config, tmp, chunk_customers=chunk)
    return rows


def _write_meta(config: WorldConfig, folder: Path, **more) -> None:
    """``truth/meta.json``: what the world was generated with."""
    meta = {
        "generator": "cdp.world",
        "customers": config.customers,
        "seed": config.seed,
        "as_of": config.as_of.isoformat(),
        "history_days": config.history_days,
        "future_days": config.future_days,
        "horizon_days": config.horizon_days,
        "window_days": config.window_days,
    } | more
    (folder / "truth" / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _world_config(
    customers: int, seed: int, as_of: str, horizon_days: int, window_days: int, **more
) -> WorldConfig:
    from cdp.world.config import WorldConfig

    moment = parse_as_of(as_of)
    return WorldConfig(
        customers=customers,
        seed=seed,
        as_of=moment,
        horizon_days=horizon_days,
        window_days=window_days,
        **more,
    )


def generate_into(
    customers: int,
    seed: int,
    as_of: str,
    out: Path,
    fmt: str,
    overwrite: bool,
    horizon_days: int = 90,
    window_days: int = 14,
) -> World:
    """Simulate a world and write it to ``out`` (the ``generate`` and ``demo`` commands)."""
    from cdp.world.generate import generate_world

    config = _world_config(customers, seed, as_of, horizon_days, window_days)
    fmt = str(fmt)
    with err_console.status(f"simulating {customers:,} customers…"):
        world = generate_world(config)
    with err_console.status(f"writing {out}…"):
        write_world(world, out, fmt, overwrite)
    return world


@app.command()
def generate(
    customers: Customers = 10_000,
    seed: Seed = 0,
    as_of: AsOf = "2025-06-30",
    out: Annotated[
        Path, typer.Option(help="Folder to write the contract tables and truth/ to.")
    ] = Path("data/world"),
    horizon_days: Annotated[int, typer.Option(help="Churn horizon H for the truth, days.")] = 90,
    window_days: Annotated[int, typer.Option(help="Repurchase window W for the truth, days.")] = 14,
    fmt: Format = TableFormat.parquet,
    overwrite: Overwrite = False,
    chunk_customers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Simulate this many customers at a time and write each table as a folder of"
            " Parquet parts, one per chunk: memory bounded by a chunk (a world of millions).",
        ),
    ] = None,
    shop: Annotated[
        Shop,
        typer.Option(
            help="gadgets: the default 30-product shop (durables and their consumables);"
            " grocery: households on weekly trips, a catalog of --products in departments,"
            " categories and needs, one year of history.",
        ),
    ] = Shop.gadgets,
    products: Annotated[
        int, typer.Option(min=100, help="Products in the grocery catalog (--shop grocery).")
    ] = 50_000,
) -> None:
    """Simulate a CDP world: contract tables before and after --as-of, and truth/ after it."""
    if shop == Shop.grocery:
        if chunk_customers is not None:
            raise BadInputError("--shop grocery is simulated at once: drop --chunk-customers")
        from cdp.world.generate import generate_grocery_world

        config = _world_config(
            customers, seed, as_of, horizon_days, window_days, history_days=GROCERY_HISTORY
        )
        with err_console.status(f"simulating {customers:,} households, {products:,} products…"):
            world = generate_grocery_world(config, products)
        with err_console.status(f"writing {out}…"):
            write_world(world, out, str(fmt), overwrite, shop="grocery", products=products)
        counts = {name: len(frame) for name, frame in world.tables.items()}
    elif chunk_customers is None:
        world = generate_into(
            customers, seed, as_of, out, fmt, overwrite, horizon_days, window_days
        )
        counts = {name: len(frame) for name, frame in world.tables.items()}
    else:
        if fmt != "parquet":
            raise BadInputError("--chunk-customers writes Parquet part files: drop --format csv")
        config = _world_config(customers, seed, as_of, horizon_days, window_days)
        with err_console.status(
            f"simulating {customers:,} customers, {chunk_customers:,} at a time…"
        ):
            counts = write_world_in_chunks(config, chunk_customers, out, overwrite)
    rows = ", ".join(f"{n:,} {name}" for name, n in counts.items())
    out_console.print(f"wrote {out}: {rows}; truth in {out / 'truth'}", soft_wrap=True)


@import_app.command("cdnow")
def import_cdnow(
    out: Annotated[Path, typer.Option(help="Folder to write the contract tables to.")] = Path(
        "data/cdnow"
    ),
    source: Annotated[
        Path | None, typer.Option(help="CDNOW_master.txt (default: the copy inside lifetimes).")
    ] = None,
    fmt: Format = TableFormat.parquet,
    overwrite: Overwrite = False,
) -> None:
    """Import the CDNOW master dataset (1997-1998, 23,570 customers) as a contract folder."""
    from cdp.cdnow import cdnow_tables
    from cdp.io import atomic_folder, write_tables

    fmt = str(fmt)
    tables = cdnow_tables(source)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_tables(tables, tmp, fmt)  # type: ignore[arg-type]
    rows = ", ".join(f"{len(f):,} {n}" for n, f in tables.items())
    out_console.print(f"wrote {out}: {rows}", soft_wrap=True)


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="A contract folder (one file per table).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    partitions: Partitions = 1,
) -> None:
    """Check a contract folder; list every violation and exit 2, or print a summary and exit 0."""
    from cdp.validation import validate_folder, validate_in_partitions

    with err_console.status(f"validating {folder}…"):
        if partitions > 1:
            report = validate_in_partitions(folder, partitions)
        else:
            _, report = validate_folder(folder)
    if as_json:
        out_console.print_json(
            json.dumps(
                {
                    "folder": report.folder,
                    "valid": report.ok,
                    "rows": report.rows,
                    "violations": [v.__dict__ for v in report.violations],
                }
            )
        )
    elif report.ok:
        print(report.summary_line())
    else:
        for violation in report.violations:
            err_console.print(f"- {violation}", highlight=False, markup=False, soft_wrap=True)
    if not report.ok:
        n = len(report.violations)
        print(f"{folder}: {n} contract violation{'s' if n != 1 else ''}", file=sys.stderr)
        raise typer.Exit(2)


@app.command()
def features(
    data: Annotated[Path, typer.Option(help="The contract folder to read.")],
    as_of: Annotated[str, typer.Option(help="Compute features as of this moment (UTC).")],
    out: Annotated[
        Path, typer.Option(help="Folder for customers.parquet, pairs.parquet and manifest.json.")
    ],
    overwrite: Overwrite = False,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty", help="Build even when --as-of lies outside the orders' time span."
        ),
    ] = False,
    partitions: Partitions = 1,
    engine: Engine = EngineName.polars,
    spark_master: SparkMaster = None,
    mlruns: Annotated[
        Path,
        typer.Option(
            help="Build with the feature settings the champions of this MLflow store were"
            " trained with (MLFLOW_TRACKING_URI overrides); the defaults without a store."
        ),
    ] = Path("mlruns"),
) -> None:
    """Build point-in-time customer and customer x consumable features from a contract folder,
    with the settings the champions were trained with (so they can score them)."""
    from cdp.validation import check_in_partitions, load_contract
    from features.build import build_features
    from features.inputs import as_inputs, order_span
    from features.io import write_parts, write_snapshot
    from features.partitions import build_partitions

    config = champions_settings(mlruns)
    moment = parse_as_of(as_of)
    whole = partitions == 1 and engine == "polars"
    with Stages("features", 3 if whole else 2) as stage:
        stage(f"validating {data}" + ("" if whole else f" in {max(partitions, 8)} partitions"))
        if whole:
            tables = load_contract(data)
        else:  # memory bounded by a partition
            check_in_partitions(data, max(partitions, 8))
            tables = as_inputs(data)
        if not allow_empty:
            _check_in_span(moment, *order_span(tables), data)
        if engine == "spark":
            stage(f"building features as of {moment} on Spark, writing {out}")
            meta = _build_on_spark(data, moment, out, partitions, spark_master, config, overwrite)
        elif partitions > 1:
            stage(f"building features as of {moment} in {partitions} partitions, writing {out}")
            parts = build_partitions(tables, as_of=moment, partitions=partitions, config=config)
            meta = write_parts(parts, config, data, out, overwrite=overwrite)
        else:
            stage(f"building features as of {moment}")
            built = build_features(tables, as_of=moment, config=config)
            stage(f"writing {out}")
            meta = write_snapshot(built, config, data, out, overwrite=overwrite)
    rows = meta["rows"]
    out_console.print(
        f"wrote {out}: {rows['customers']:,} customers, {rows['pairs']:,} customer x consumable"
        f" pairs as of {meta['as_of']}",
        soft_wrap=True,
    )


def _build_on_spark(data, moment, out, partitions, master, config, overwrite) -> dict:
    """``features --engine spark``: the build on Spark into a temporary folder beside
    ``out``, then the manifest, then the rename."""
    from cdp.io import atomic_folder
    from features.io import write_manifest
    from features.spark import build_on_spark, parquet_tables

    parquet_tables(data)  # before the session starts
    with spark_session(master) as spark, atomic_folder(out, overwrite=overwrite) as tmp:
        n = partitions if partitions > 1 else None
        shape, rows = build_on_spark(
            spark, data, as_of=moment, out=tmp, partitions=n, config=config
        )
        used = n or int(spark.conf.get("spark.sql.shuffle.partitions"))
        return write_manifest(tmp, shape, config, data, rows=rows, engine="spark", partitions=used)


def _check_in_span(at: Moment, first: datetime | None, last: datetime | None, data: Path) -> None:
    """Refuse an as-of before the first order or after the last one: the features would be
    empty, or describe customers long after the data ends (a mistyped year)."""
    if first is None:
        raise BadInputError(f"--as-of: {data} has no orders; pass --allow-empty to build anyway")
    span = f"the orders in {data} run from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    if at < first or at > last:
        where = "before the first order" if at < first else "after the last order"
        raise BadInputError(
            f"--as-of {at:%Y-%m-%d} is {where}: {span}; pick an --as-of in that span, or pass"
            " --allow-empty to build anyway"
        )
