"""The served answers behind three doors: `nextbest serve` (the BentoML service, a child
process that stops with its parent), `nextbest mcp` (tools for LLM agents) and `nextbest
suggest` (every customer's answer at once, for outbound campaigns); and `nextbest
evaluate-policy`, what another policy would have achieved on the answers served."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cdp.errors import BadInputError
from nextbest.cli.base import (
    Overwrite,
    Stages,
    Tracking,
    app,
    err_console,
    out_console,
    parse_as_of,
    quiet_mlflow,
)

# The options `serve` and `mcp` share: the same service behind two front doors.
Data = Annotated[Path, typer.Option(help="The contract folder (identities, consents, orders).")]
Features = Annotated[Path, typer.Option(help="A feature snapshot from `nextbest features`.")]
State = Annotated[Path, typer.Option(help="Folder for the suggestion, feedback and event store.")]
Now = Annotated[str | None, typer.Option(help="A fixed clock (ISO time) for simulated data.")]


@app.command()
def serve(
    data: Data,
    features: Features,
    mlruns: Tracking = Path("mlruns"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    workers: Annotated[
        int,
        typer.Option(help="Worker processes; more than 1 needs NEXTBEST_ONLINE_STORE (Redis)."),
    ] = 1,
    state: State = Path("data/serving"),
    now: Now = None,
    poll_seconds: Annotated[
        float, typer.Option(help="Check the registry for a new champion this often (0: off).")
    ] = 0.0,
) -> None:
    """Serve next best actions over HTTP (BentoML); stops with Ctrl-C or SIGTERM."""
    from serving.memory import online

    if workers < 1:
        raise BadInputError(f"--workers {workers}: at least one worker")
    if workers != 1 and not online.configured():
        raise BadInputError(online.ONE_WORKER.format(what=f"--workers {workers}"))
    _check_serving(data, features, now, keys=True)
    _check_port(host, port)  # before the champions load: a port in use is one quick line
    versions = _champions(mlruns)
    env = {
        **os.environ,
        "NEXTBEST_DATA": str(data.resolve()),
        "NEXTBEST_FEATURES": str(features.resolve()),
        "NEXTBEST_MLRUNS": str(mlruns.resolve()),
        "NEXTBEST_STATE": str(state.resolve()),
        "NEXTBEST_POLL_SECONDS": str(poll_seconds),
        "NEXTBEST_WORKERS": str(workers),
        **({"NEXTBEST_NOW": now} if now else {}),
        # BentoML keeps its Prometheus files in BENTOML_HOME/prometheus_multiproc_dir and
        # wipes that folder whenever a server starts: a second service on the machine would
        # delete this one's counters (its /metrics would stop counting). One home per state.
        "BENTOML_HOME": str((state / "bentoml").resolve()),
    }
    models = ", ".join(f"{k} v{v}" for k, v in versions.items())
    err_console.print(f"serving {models} on http://{host}:{port}", highlight=False)
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.http.service:NextBest",
        "--host",
        host,
        "--port",
        str(port),
        "--api-workers",
        str(workers),
    ]
    raise typer.Exit(_run_server(command, env))


@app.command()
def mcp(
    data: Data,
    features: Features,
    mlruns: Tracking = Path("mlruns"),
    http: Annotated[
        bool, typer.Option("--http", help="Streamable HTTP on --host/--port instead of stdio.")
    ] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on (with --http).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (with --http).")] = 3001,
    state: State = Path("data/serving"),
    now: Now = None,
) -> None:
    """Serve the tools for LLM agents over MCP (stdio by default; --http for HTTP with keys)."""
    from serving.config import ServeConfig, holdout_from_env
    from serving.mcp import build_server, load_runtime

    _check_serving(data, features, now, keys=http)
    if http:
        _check_port(host, port)
    versions = _champions(mlruns)
    config = ServeConfig(
        data=data.resolve(),
        features=features.resolve(),
        mlruns=mlruns.resolve(),
        state=state.resolve(),
        now=parse_as_of(now) if now else None,
        holdout=holdout_from_env(),  # the service's control group, on every door
    )
    runtime = load_runtime(config)
    models = ", ".join(f"{k} v{v}" for k, v in versions.items())
    where = f"http://{host}:{port}/mcp" if http else "stdio"
    err_console.print(f"MCP tools over {models} on {where}", highlight=False)
    server = build_server(runtime, http=(host, port) if http else None)
    if http:
        server.run("streamable-http", host=host, port=port)
    else:
        server.run("stdio")


@app.command()
def suggest(
    data: Data,
    as_of: Annotated[str, typer.Option(help="The moment the answers are for (UTC).")],
    out: Annotated[Path, typer.Option(help="Folder for suggestions.parquet and .json.")],
    max_actions: Annotated[
        int, typer.Option(min=1, max=10, help="Actions per customer at most.")
    ] = 3,
    features: Annotated[
        Path | None,
        typer.Option(
            help="A snapshot from `nextbest features`, at or before --as-of (else built here)."
        ),
    ] = None,
    mlruns: Tracking = Path("mlruns"),
    overwrite: Overwrite = False,
    service_state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="A service's --state folder: apply what it accepted online first (its log,"
            " or NEXTBEST_ONLINE_STORE's), with its cooldowns and caps; needs"
            " NEXTBEST_PSEUDONYM_KEY.",
        ),
    ] = None,
) -> None:
    """Next best actions for every customer at once (outbound campaigns): the same policy,
    consent rules and texts as /suggest; marketing only with marketing consent in force."""
    import json
    import tempfile

    from cdp.io import atomic_folder, write_table
    from policy.catalog import DEFAULT, load_catalog
    from serving.config import holdout_from_env
    from serving.memory.snapshot import load_snapshot
    from serving.outbound import hold_out, suggest_all, with_online_rows

    moment = parse_as_of(as_of)
    versions = _champions(mlruns)
    steps = 3 if service_state is None else 4
    with Stages("suggest", steps) as stage, tempfile.TemporaryDirectory() as tmp:
        if features is None:
            from cdp.validation import load_contract
            from features.build import build_features
            from features.io import write_snapshot
            from training.scoring import settings_for

            stage(f"building features as of {moment}")
            config = settings_for(versions, None)  # the champions' own
            built = build_features(load_contract(data), as_of=moment, config=config)
            features = Path(tmp) / "features"
            write_snapshot(built, config, data, features)
        else:
            stage(f"reading {features}")
        state = load_snapshot(data=data, features=features)
        if state.as_of > moment:  # the service's rule too: features from the future
            raise BadInputError(
                f"--features: the snapshot is as of {state.as_of.isoformat()}, after --as-of"
                f" {moment.isoformat()}"
            )
        hold_out(state, holdout_from_env())  # the service's control group: no marketing
        exposures = None
        if service_state is not None:
            stage(f"applying what the service at {service_state} accepted online")
            exposures = with_online_rows(state, service_state, mlruns, moment)
        stage(f"ranking {len(state.customers):,} customers")
        frame, summary = suggest_all(
            state, load_catalog(DEFAULT), now=moment, max_actions=max_actions, exposures=exposures
        )
        stage(f"writing {out}")
        meta = {"as_of": moment.isoformat(), "model_versions": versions, **summary}
        with atomic_folder(out, overwrite=overwrite) as folder:
            write_table(frame, folder / "suggestions.parquet")
            (folder / "suggestions.json").write_text(json.dumps(meta, indent=2) + "\n")
    out_console.print(
        f"wrote {out}: {summary['rows']:,} suggestions for {summary['customers']:,} customers"
        f" as of {moment.isoformat()}; {summary['withheld_for_consent']:,} marketing actions"
        f" withheld: no marketing consent in force; {summary['withheld_for_holdout']:,} for the"
        " global control group",
        soft_wrap=True,
    )


@app.command("evaluate-policy")
def evaluate_policy(
    feedback: Annotated[
        Path,
        typer.Option(
            help="A service's state folder (its audit log and feedback store), or a Parquet"
            " or JSON-lines file of logged decisions."
        ),
    ],
    catalog: Annotated[
        Path | None,
        typer.Option(help="The target policy's action catalog (default: policy/actions.yaml)."),
    ] = None,
    outcome: Annotated[
        str, typer.Option(help="The reward: converted, or accepted (converted counts too).")
    ] = "converted",
    out: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
) -> None:
    """Off-policy evaluation: the target catalog's conversion rate estimated from the logged
    answers by inverse-propensity (IPS) and self-normalised (SNIPS) weighting, with 95%
    intervals, beside the served policy's own rate."""
    from rich.table import Table

    from policy.catalog import DEFAULT, load_catalog
    from policy.offpolicy import evaluate
    from serving.memory.decisions import logged_decisions, read_decisions, write_report

    if outcome not in ("converted", "accepted"):
        raise BadInputError(f"--outcome: converted or accepted, not {outcome!r}")
    if feedback.is_dir():
        decisions = logged_decisions(feedback, outcome)
    elif feedback.is_file():
        decisions = read_decisions(feedback)
    else:
        raise BadInputError(f"--feedback: {feedback} does not exist")
    report = evaluate(decisions, load_catalog(catalog or DEFAULT))
    table = Table(title=f"{outcome} rate per answer ({report.answers:,} answers logged)")
    for column in ("estimate", "value", "95% interval"):
        table.add_column(column)
    for name, label in (
        ("logged", "served policy (observed)"),
        ("ips", "target: IPS"),
        ("snips", "target: SNIPS"),
    ):
        e = getattr(report, name)
        table.add_row(label, f"{e.value:.4f}", f"{e.low:.4f} to {e.high:.4f}")
    out_console.print(table)
    out_console.print(
        f"the target puts the served first action first in {report.matched:,} of"
        f" {report.answers:,} answers"
    )
    if out is not None:
        write_report(report, out)


def _check_serving(data: Path, features: Path, now: str | None, *, keys: bool) -> None:
    """What serving needs before anything loads, each refused with one line."""
    from cdp.privacy import keys as pseudonym_keys
    from serving.memory import online
    from serving.security import load_keys

    if url := online.configured():
        online.RedisLog(url)  # one line when it cannot be reached
    if now is not None:
        parse_as_of(now)
    if not (features / "manifest.json").is_file():
        raise BadInputError(f"--features: {features} is not a feature snapshot (no manifest.json)")
    if not data.is_dir():
        raise BadInputError(f"--data: {data} is not a contract folder")
    if keys and not load_keys():
        raise BadInputError(
            "no API keys: set NEXTBEST_API_KEYS (key:scope,...) or NEXTBEST_API_KEYS_FILE"
        )
    pseudonym_keys()  # one line and exit 2 without NEXTBEST_PSEUDONYM_KEY
    from serving.config import holdout_from_env

    holdout_from_env()  # one line for a share outside [0, 0.5] or no period


def _champions(mlruns: Path) -> dict[str, str]:
    """The champion versions; refuses with one line when there is none."""
    from training import registry, scoring

    quiet_mlflow()
    registry.configure(mlruns)
    _, versions = scoring.load_champions()
    return versions


def _die_with_parent() -> None:
    """In a child before ``exec``: ask the kernel for SIGTERM when the parent dies (Linux)."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _check_port(host: str, port: int) -> None:
    """Refuse, with one line, a port another process listens on."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise BadInputError(
                f"--port {port}: {host}:{port} is in use ({error.strerror}); stop what listens"
                " there or pick another --port"
            ) from None


def _run_server(command: list[str], env: dict) -> int:
    """Run BentoML's server as a child and pass SIGTERM / SIGINT on to it, so stopping
    ``nextbest serve`` stops the whole tree (server and workers) and frees the port. On
    Linux the child also gets SIGTERM when this process dies without forwarding anything
    (SIGKILL, a crash): ``PR_SET_PDEATHSIG``."""
    import signal
    import subprocess

    child = subprocess.Popen(
        command, env=env, cwd=Path(__file__).resolve().parents[1], preexec_fn=_die_with_parent
    )

    def forward(signum, _frame) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    return code if code >= 0 else 128 - code
