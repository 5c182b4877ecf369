"""Is the measured uplift right? A simulation with a known effect (``make eval-uplift``).

A generated world (``BENCH_UPLIFT_CUSTOMERS``, default 20,000, seed 9) is cut at ``T``: the
models are trained and the features built on the rows at or before ``T``, and the service
is started on that folder with a global control group (``BENCH_UPLIFT_HOLDOUT``, default
0.3) and a simulated clock at ``T``. Then, day by day over ``BENCH_UPLIFT_DAYS`` (default
28), at 09:00:

1. the clock moves to the day (``POST /admin/clock``);
2. the CDP delivers what happened since the day before (the world's own orders and consent
   changes, through ``POST /events``), except the refills a reminder moved earlier;
3. a simulated chatbot asks for every customer's suggestions (``POST /suggest/batch``);
   each marketing action shown gets ``shown`` feedback;
4. the simulated customers respond (:mod:`cdp.world.response`: a reminder moves the refill
   earlier with probability ``reminder``, a win-back brings a lapsed customer back with
   probability ``winback``); their orders go to ``POST /events`` and their feedback
   (``converted``) to ``POST /feedback``.

Then ``nextbest report`` measures the period, and its interval is compared with the true
uplift: each treated customer's outcomes with the effect minus without it (the world's own
future), averaged over the treated. Two runs: the effect, and an A/A run (no effect, the
truth is zero). Each prints its intervals and whether they cover the truth.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmarks.nba import TIMES, history
from benchmarks.serve import _free_port, _stop

CUSTOMERS = int(os.environ.get("BENCH_UPLIFT_CUSTOMERS", "20000"))
DAYS = int(os.environ.get("BENCH_UPLIFT_DAYS", "28"))
SHARE = float(os.environ.get("BENCH_UPLIFT_HOLDOUT", "0.3"))
T = pd.Timestamp("2025-06-30", tz="UTC")
CHATBOT, ADMIN = "uplift-chatbot-key-0000000001", "uplift-admin-key-00000000001"
PSEUDONYM_KEY = "pseudonym-key-for-the-uplift-run"
PERIOD = "2025H2"
BATCH = 500  # requests per /suggest/batch and rows per /events
OUTCOMES = ("converted", "orders", "revenue")


@dataclass(frozen=True)
class Run:
    """Where a simulation runs: the cut contract folder, its features and models."""

    data: Path
    features: Path
    mlruns: Path
    future: dict[str, pd.DataFrame]  # orders and consents after T, as the world had them


def cut(tables: dict[str, pd.DataFrame], at: pd.Timestamp, folder: Path) -> dict:
    """Write the contract folder as a CDP exports it at ``at`` (:func:`benchmarks.nba.history`:
    no row dated later) and return what comes after: the orders and consent records of
    the customers known at ``at``."""
    from cdp.io import write_tables

    past = history(tables, at)
    known = set(past["customers"]["customer_id"])
    past = {
        name: frame[frame["customer_id"].isna() | frame["customer_id"].isin(known)]
        if "customer_id" in frame and name != "customers"
        else frame
        for name, frame in past.items()
    }  # identities of customers created later
    write_tables(past, folder)
    future = {}
    for name in ("orders", "consents"):
        frame = tables[name]
        later = frame[(frame[TIMES[name]] > at) & frame["customer_id"].isin(known)]
        future[name] = later.sort_values(TIMES[name], kind="stable").reset_index(drop=True)
    return future


def simulate(
    run: Run,
    state: Path,
    effect,
    days: int,
    share: float,
    out: Path,
    seconds_per_day: list | None = None,
) -> dict:
    """Serve ``run``, play ``days`` days with ``effect`` (:class:`cdp.world.response.Effect`),
    run ``nextbest report`` into ``out`` and return the report beside the true uplift."""
    import httpx

    from cdp.world.response import respond

    env = {
        **os.environ,
        "NEXTBEST_API_KEYS": f"{CHATBOT}:chatbot,{ADMIN}:admin",
        "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "NEXTBEST_HOLDOUT": str(share),
        "NEXTBEST_HOLDOUT_PERIOD": PERIOD,
        "MLFLOW_LOGGING_LEVEL": "WARNING",
    }
    env.pop("NEXTBEST_ONLINE_STORE", None)
    shutil.rmtree(state, ignore_errors=True)
    until = T + pd.Timedelta(days=days)
    contract = _contract(run.data)
    customers = contract["customers"]["customer_id"].tolist()
    history_ = contract["orders"]
    baseline = run.future["orders"][run.future["orders"]["ordered_at"] < until]
    consents = run.future["consents"]
    pending, delivered, truth = baseline, [], []
    delivered_to, next_order = T, 1
    server, url = _serve(run, state, env)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for day in range(days):
                started = time.perf_counter()
                moment = T + pd.Timedelta(days=day, hours=9)
                _post(client, "/admin/clock", {"now": moment.isoformat()}, ADMIN)
                due, pending = _split(pending, "ordered_at", moment)
                _deliver(client, due, _between(consents, delivered_to, moment))
                delivered.append(due)
                history_ = pd.concat([history_, due], ignore_index=True)
                delivered_to = moment
                shown = _ask(client, customers, moment)
                if not shown.empty:
                    orders, pending, moved = respond(
                        effect, shown, pending, history_, until, next_order
                    )
                    next_order += len(orders)
                    _deliver(client, orders, consents.iloc[0:0])
                    delivered.append(orders)
                    history_ = pd.concat([history_, orders], ignore_index=True)
                    truth.append(moved)
                    _converted(client, shown, moved)
                if seconds_per_day is not None:
                    seconds_per_day.append(time.perf_counter() - started)
            _post(client, "/admin/clock", {"now": until.isoformat()}, ADMIN)
            _deliver(client, pending, _between(consents, delivered_to, until, closed=False))
            delivered.append(pending)
    finally:
        _stop(server)
    report = _report(run, state, out, until, env)
    simulated = pd.concat(delivered, ignore_index=True)
    report["truth"] = true_uplift(baseline, simulated, customers, share, T, until)
    report["responses"] = int(sum(len(t) for t in truth))
    return report


def true_uplift(baseline, simulated, customers, share, since, until) -> dict:
    """Each outcome's true uplift: the treated customers' outcomes with the effect minus
    without it (control customers get no marketing, so none moves), averaged over the
    treated."""
    from cdp import privacy
    from policy.holdout import Holdout
    from policy.uplift import outcomes_per_customer

    key = PSEUDONYM_KEY.encode()
    holdout = Holdout(share, PERIOD)
    names = privacy.pseudonymise(pd.Series(customers, dtype=str), key).tolist()
    groups = pd.DataFrame({"customer": names, "group": [holdout.group(p, key) for p in names]})
    by_id = dict(zip(customers, names, strict=True))

    def outcomes(lines):
        lines = lines.assign(customer=lines["customer_id"].map(by_id))
        return outcomes_per_customer(groups, lines, since, until).set_index("customer")

    without, with_ = outcomes(baseline), outcomes(simulated)
    treated = groups.loc[groups["group"] == "treated", "customer"]
    return {o: float((with_[o] - without[o]).loc[treated].mean()) for o in OUTCOMES}


def _split(frame: pd.DataFrame, column: str, at) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows dated at or before ``at``, and the rest."""
    now = frame[column] <= at
    return frame[now], frame[~now]


def _between(frame: pd.DataFrame, after, upto, closed: bool = True) -> pd.DataFrame:
    """The consent records in ``(after, upto]`` (``(after, upto)`` when not ``closed``)."""
    t = frame["recorded_at"]
    return frame[(t > after) & ((t <= upto) if closed else (t < upto))]


def _contract(folder: Path) -> dict[str, pd.DataFrame]:
    from cdp.validation import load_contract

    tables = load_contract(folder)
    return {"customers": tables.customers, "orders": tables.orders}


def _rows(frame: pd.DataFrame) -> list[dict]:
    """JSON rows, timestamps as ISO text."""
    return json.loads(frame.to_json(orient="records", date_format="iso", date_unit="us"))


def _deliver(client, orders: pd.DataFrame, consents: pd.DataFrame) -> None:
    columns = ["order_id", "customer_id", "ordered_at", "product_id", "quantity", "amount"]
    rows = _rows(orders[columns])
    signed = _rows(consents)
    for i in range(0, max(len(rows), len(signed)), BATCH):
        body = {"orders": rows[i : i + BATCH], "consents": signed[i : i + BATCH]}
        if body["orders"] or body["consents"]:
            _post(client, "/events", body, ADMIN)


def _ask(client, customers: list[str], moment: pd.Timestamp) -> pd.DataFrame:
    """Every customer's suggestions at ``moment``; ``shown`` feedback on each marketing action
    returned; the displays (``customer_id``, ``action``, ``product_id``, ``at``,
    ``request_id``)."""
    shown = []
    for i in range(0, len(customers), BATCH):
        body = {"requests": [{"customer_id": c} for c in customers[i : i + BATCH]]}
        for answer in _post(client, "/suggest/batch", body, CHATBOT)["responses"]:
            for action in answer["actions"]:
                if action["purpose"] == "marketing":
                    shown.append(
                        (answer["customer_id"], action["action"], action["product_id"], moment,
                         answer["request_id"])
                    )  # fmt: skip
    frame = pd.DataFrame(shown, columns=["customer_id", "action", "product_id", "at", "request_id"])
    for row in frame.itertuples():  # one feedback item per request: the service's API
        _feedback(client, row.request_id, row.action, row.product_id, "shown")
    return frame


def _converted(client, shown: pd.DataFrame, moved: pd.DataFrame) -> None:
    """``converted`` feedback on the displays that worked."""
    worked = shown.merge(
        moved[["customer_id", "action"]].drop_duplicates(), on=["customer_id", "action"]
    ).drop_duplicates(["customer_id", "action"])
    for row in worked.itertuples():
        _feedback(client, row.request_id, row.action, row.product_id, "converted")


def _feedback(client, request_id, action, product_id, outcome) -> None:
    product_id = None if pd.isna(product_id) else product_id
    body = {
        "request_id": request_id,
        "action": action,
        "product_id": product_id,
        "outcome": outcome,
    }
    _post(client, "/feedback", body, CHATBOT)


def _post(client, path: str, body: dict, key: str) -> dict:
    r = client.post(path, json=body, headers={"x-api-key": key})
    if r.status_code != 200:
        raise SystemExit(f"{path}: {r.status_code} {r.text[:500]}")
    return r.json()


def _serve(run: Run, state: Path, env: dict):
    from serving.demo import wait_ready

    port = _free_port()
    state.mkdir(parents=True, exist_ok=True)
    log = open(state.parent / f"{state.name}.log", "w")  # noqa: SIM115 - the child writes to it
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("nextbest")), "serve", "--data", str(run.data),
         "--features", str(run.features), "--mlruns", str(run.mlruns), "--state", str(state),
         "--port", str(port), "--now", T.isoformat()],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{port}"
    if not wait_ready(url, server, timeout=600):
        _stop(server)
        raise SystemExit(f"the service did not start: see {log.name}")
    return server, url


def _report(run: Run, state: Path, out: Path, until: pd.Timestamp, env: dict) -> dict:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("nextbest")), "report", "--state", str(state),
         "--data", str(run.data), "--since", T.isoformat(), "--until", until.isoformat(),
         "--out", str(out), "--mlruns", str(run.mlruns)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"nextbest report failed: {done.stderr}")
    return json.loads(out.with_name(f"{out.stem}.json").read_text())


def covers(report: dict) -> dict[str, bool]:
    """Whether each outcome's interval covers its true uplift."""
    return {
        u["outcome"]: u["low"] <= report["truth"][u["outcome"]] <= u["high"]
        for u in report["uplift"]
    }


def print_run(name: str, report: dict) -> None:
    print(f"{name}: {report['customers']['treated']:,} treated, {report['customers']['control']:,}"
          f" control, {report['responses']:,} responses to the suggestions")  # fmt: skip
    print(f"{'outcome':>10} {'truth':>9} {'uplift':>9} {'95% interval':>22} {'covers':>7}")
    cover = covers(report)
    for u in report["uplift"]:
        o = u["outcome"]
        print(
            f"{o:>10} {report['truth'][o]:>9.4f} {u['difference']:>9.4f}"
            f" {u['low']:>10.4f} to {u['high']:>8.4f} {cover[o]!s:>7}"
        )


def run() -> None:
    import tempfile
    import warnings

    from cdp.world.config import WorldConfig
    from cdp.world.generate import generate_world
    from cdp.world.response import Effect
    from features.build import build_features
    from features.config import FeatureConfig
    from features.io import write_snapshot
    from training import pipeline, registry

    warnings.filterwarnings("ignore", module="lifetimes")
    started = time.perf_counter()
    world = generate_world(WorldConfig(customers=CUSTOMERS, seed=9, as_of=T))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        future = cut(world.tables, T, root / "history")
        config = FeatureConfig()
        registry.configure(root / "mlruns")
        trained = T - pd.Timedelta(days=1)
        pipeline.train(root / "history", as_of=trained, config=config, root=root / "mlruns")
        built = build_features(root / "history", as_of=T, config=config)
        write_snapshot(built, config, root / "history", root / "features")
        run_ = Run(root / "history", root / "features", root / "mlruns", future)
        print(f"{CUSTOMERS:,} customers, holdout {SHARE:g}, {DAYS} days from {T.date()}"
              f" ({time.perf_counter() - started:.0f} s to build)", flush=True)  # fmt: skip
        for name, effect in (
            ("effect (reminder 0.5, win-back 0.3)", Effect(reminder=0.5, winback=0.3, seed=1)),
            ("A/A (no effect)", Effect(seed=2)),
        ):
            seconds: list[float] = []
            began = time.perf_counter()
            report = simulate(
                run_, root / "state", effect, DAYS, SHARE, root / "report.html", seconds
            )
            print_run(name, report)
            print(f"  {time.perf_counter() - began:.0f} s; a simulated day takes"
                  f" {sum(seconds) / max(len(seconds), 1):.1f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    run()
