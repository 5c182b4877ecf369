"""`nextbest demo`: the main job on embedded defaults, end to end."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from cdp.errors import NextbestError
from nextbest.cli.base import (
    AsOf,
    Customers,
    Seed,
    Tracking,
    app,
    err_console,
    out_console,
    parse_as_of,
    quiet_mlflow,
)
from nextbest.cli.data import generate_into
from nextbest.cli.models import train_table


@app.command()
def demo(
    customers: Customers = 5_000,
    seed: Seed = 7,
    as_of: AsOf = "2025-06-30",
    out: Annotated[Path, typer.Option(help="Folder for the demo world.")] = Path("data/demo"),
    mlruns: Tracking = Path("mlruns"),
    serve: Annotated[
        bool, typer.Option(help="Train, serve and run the scripted chatbot conversation.")
    ] = True,
) -> None:
    """Run the main job on embedded defaults: generate a world, validate it, summarise it;
    build features, train, serve, and hold a short scripted chatbot conversation."""
    from cdp.summary import world_summary
    from cdp.validation import load_contract

    generate_into(customers, seed, as_of, out, "parquet", overwrite=True)
    out_console.print(f"[bold]1.[/] generated a world of {customers:,} customers in {out}")
    tables = load_contract(out)
    out_console.print(f"[bold]2.[/] validated {out}: the contract holds")
    summary = world_summary(tables, parse_as_of(as_of), truth_folder=out / "truth")
    table = Table(title=f"3. the world as of {as_of}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, value)
    out_console.print(table)
    if serve:
        _demo_serving(tables, out, parse_as_of(as_of), mlruns)


def _demo_serving(tables, out: Path, moment: pd.Timestamp, mlruns: Path) -> None:
    import secrets
    import socket
    import subprocess

    from features.build import build_features
    from features.config import FeatureConfig
    from features.io import write_snapshot
    from serving.demo import conversation, pick_customer, wait_ready
    from training import pipeline, registry

    config = FeatureConfig()
    snapshot = out.with_name(f"{out.name}-features")
    write_snapshot(
        build_features(tables, as_of=moment, config=config), config, out, snapshot, overwrite=True
    )
    out_console.print(f"[bold]4.[/] built features as of {moment.date()} in {snapshot}")
    quiet_mlflow()
    registry.configure(mlruns)
    with err_console.status("training…"):
        report = pipeline.train(tables, as_of=moment, config=config, root=mlruns)
    out_console.print(train_table(report))
    chatbot, admin = secrets.token_hex(16), secrets.token_hex(16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = (moment + pd.Timedelta(hours=12)).isoformat()
    env = {
        "NEXTBEST_PSEUDONYM_KEY": secrets.token_urlsafe(24),  # unless one is set
        **os.environ,
        "NEXTBEST_API_KEYS": f"{chatbot}:chatbot,{admin}:admin",
    }
    command = [
        str(Path(sys.executable).with_name("nextbest")),
        "serve",
        "--data",
        str(out),
        "--features",
        str(snapshot),
        "--mlruns",
        str(mlruns),
        "--port",
        str(port),
        "--state",
        str(out.with_name(f"{out.name}-serving")),
        "--now",
        now,
    ]
    log_path = out.with_name(f"{out.name}-serve.log")
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with err_console.status(f"starting the service on {url}…"):
            if not wait_ready(url, server):
                raise NextbestError(f"the demo service did not become ready; see {log_path}")
        out_console.print(f"[bold]5.[/] serving on {url} (clock fixed at {now})")
        customer = pick_customer(out, snapshot, moment + pd.Timedelta(hours=12))
        conversation(url, chatbot, admin, customer, _say)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    out_console.print("[bold]6.[/] stopped the service")


def _say(title: str, answer: dict) -> None:
    who = answer["customer_id"] or "unknown visitor"
    table = Table(title=f"{title}: {who} ({answer['locale']})", title_justify="left")
    for column in ("action", "product", "score", "message / reason"):
        table.add_column(column)
    for action in answer["actions"]:
        table.add_row(
            action["action"],
            action["product_id"] or "",
            f"{action['score']:.2f}",
            action["message"] or action["reason"],
        )
    out_console.print(table)
    held = sorted({f"{s['action']}: {s['reason']}" for s in answer["do_not_suggest"]})
    if held:
        out_console.print("   held back: " + "; ".join(held), highlight=False, soft_wrap=True)
