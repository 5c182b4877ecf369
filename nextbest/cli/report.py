"""`nextbest report`: what the suggestions brought against the global control group, as one
self-contained HTML page and ``report.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nextbest.cli.base import Stages, Tracking, app, out_console, parse_as_of


@app.command()
def report(
    state: Annotated[
        Path, typer.Option(help="The service's --state folder (its online log, audit, feedback).")
    ],
    data: Annotated[Path, typer.Option(help="The contract folder (customers, orders).")],
    since: Annotated[str, typer.Option(help="The period's start (UTC, included).")],
    until: Annotated[str, typer.Option(help="The period's end (UTC, excluded).")],
    out: Annotated[
        Path, typer.Option(help="The HTML page; report.json is written beside it.")
    ] = Path("report.html"),
    mlruns: Tracking = Path("mlruns"),
) -> None:
    """Uplift against the global control group (conversion, orders and revenue per customer,
    treated minus control, with 95% intervals; per action where the audit log allows) and the
    service's own figures for [--since, --until). Needs the service's NEXTBEST_HOLDOUT,
    NEXTBEST_HOLDOUT_PERIOD and NEXTBEST_PSEUDONYM_KEY (and NEXTBEST_ONLINE_STORE if set)."""
    import json

    import pandas as pd

    from policy.learning import Prior
    from serving.config import holdout_from_env
    from serving.report.evidence import gather
    from serving.report.page import number, render
    from serving.report.summary import summarise

    start = pd.Timestamp(parse_as_of(since, "--since"))
    end = pd.Timestamp(parse_as_of(until, "--until"))
    holdout = holdout_from_env()
    with Stages("report", 3) as stage:
        stage(f"reading {data} and {state}")
        evidence = gather(data, state, mlruns, holdout, start, end)
        stage(f"measuring {len(evidence.groups):,} customers")
        figures = summarise(evidence, Prior())
        stage(f"writing {out}")
        texts = {
            out.with_name(f"{out.stem}.json"): json.dumps(figures, indent=2) + "\n",
            out: render(figures),
        }
        _write(texts)
    for u in figures["uplift"]:
        out_console.print(
            f"{u['outcome']}: uplift {number(u['difference'])} per customer"
            f" (95% interval {number(u['low'])} to {number(u['high'])}); treated"
            f" {number(u['treated_mean'])}, control {number(u['control_mean'])}",
            soft_wrap=True,
        )
    for warning in figures["warnings"]:
        out_console.print(f"warning: {warning}", soft_wrap=True)
    out_console.print(f"wrote {out} and {out.with_name(out.stem + '.json')}", soft_wrap=True)


def _write(texts: dict[Path, str]) -> None:
    """Write each file through a temporary one renamed into place once all are written:
    an error leaves no file half-written."""
    import os

    temporary = {}
    try:
        for path, text in texts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            temporary[path] = tmp
        for path, tmp in temporary.items():
            tmp.replace(path)
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
