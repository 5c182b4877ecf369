"""Loading with an online log: start-up and reload time and peak memory with 0, 200k and 1M
rows accepted online, before and after compaction.

The rows are the world's own events sent online as well (what a CDP streaming to the
service and exporting nightly does): the snapshot holds them, so the first load replays
them all, then compaction (:mod:`serving.memory.compaction`) drops them; the loads after
that replay nothing. Each measurement runs in a fresh interpreter (its own ``VmHWM``): one
start-up (the first load), then one reload (a second state built beside the first, as
``POST /admin/reload`` does), then four more reloads, for what each leaves behind (``VmRSS``
after a full collection, per reload). The reference is the same world with an empty log,
in the same run.

``BENCH_ONLINE_CUSTOMERS`` (default 20,000) sizes the world and ``BENCH_ONLINE_ROWS``
(default ``0,200000,1000000``) the logs; the world, its snapshot and champions are cached
in data/bench/.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from benchmarks.features import AS_OF, _own_peak_mb, _world

CUSTOMERS = int(os.environ.get("BENCH_ONLINE_CUSTOMERS", "20000"))
ROWS = [int(x) for x in os.environ.get("BENCH_ONLINE_ROWS", "0,200000,1000000").split(",")]
KEY = "bench-online-pseudonym-key-000001"
CHUNK = 50_000
MOMENT = pd.Timestamp(AS_OF, tz="UTC")  # the snapshot's as-of, and the service's clock
RELOADS = int(os.environ.get("BENCH_ONLINE_RELOADS", "4"))  # after the first: growth per reload


def _prepare(data: Path) -> Path:
    """The world's feature snapshot and champions (cached beside it)."""
    from features.build import build_features
    from features.config import FeatureConfig
    from features.io import write_snapshot
    from training import pipeline, registry

    cache = data.parent / f"online-{CUSTOMERS}"
    if not (cache / "features" / "manifest.json").is_file():
        print("building the feature snapshot and training champions (once)…", flush=True)
        config = FeatureConfig()
        registry.configure(cache / "mlruns")
        pipeline.train(data, as_of=AS_OF, config=config, root=cache / "mlruns")
        write_snapshot(
            build_features(data, as_of=AS_OF, config=config), config, data, cache / "features"
        )
    return cache


def _fill(state: Path, data: Path, rows: int) -> None:
    """``rows`` of the world's events stored as accepted online (sealed and encrypted, as
    ``POST /events`` stores them), in batches of :data:`CHUNK`."""
    import numpy as np

    from cdp import privacy
    from serving.memory.feedback import FeedbackStore

    key = privacy.keys()[0]
    events = pd.read_parquet(data / "events.parquet")
    events = events[events["occurred_at"] <= MOMENT]
    events = events.iloc[np.arange(rows) % len(events)]  # the world's rows, again if need be
    events = events.assign(
        occurred_at=events["occurred_at"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    fields = ("event_id", "customer_id", "anonymous_id", "occurred_at", "source", "event_type",
              "product_id", "sentiment")  # fmt: skip
    columns = [c for c in fields if c in events]
    records = events[columns].astype(object).where(events[columns].notna(), None)
    store = FeedbackStore(state / "serving.db")
    at = datetime.now(UTC)
    for start in range(0, rows, CHUNK):  # each row encrypted, as the service encrypts it
        chunk = records.iloc[start : start + CHUNK].to_dict("records")
        stored = [
            ("events", privacy.pseudonym(r["customer_id"], key) if r["customer_id"] else None,
             *privacy.sealed_row(r, key), privacy.lock_row(r, key))
            for r in chunk
        ]  # fmt: skip
        store.record_events(stored, at, uuid.uuid4().hex)


def _load(data: Path, cache: Path, state: Path) -> None:
    """In this process: a start-up, then a reload; their seconds, the log's entries before
    and after, and the peak memory after each, on stdout."""
    from serving.config import ServeConfig
    from serving.memory.runtime import load_state, open_runtime, release_freed_memory

    config = ServeConfig(
        data=data,
        features=cache / "features",
        mlruns=cache / "mlruns",
        state=state,
        now=MOMENT.to_pydatetime(),
    )
    rt = open_runtime(config, reload=dict)
    entries = rt.feedback.count("ingested")
    started = time.perf_counter()
    rt.state = load_state(rt, config)
    start_seconds, start_peak = time.perf_counter() - started, _own_peak_mb()
    compacted = rt.feedback.count("ingested")
    started = time.perf_counter()
    rt.state = load_state(rt, config)  # beside the first, as a reload builds it
    figures = {
        "entries": entries,
        "after": compacted,
        "start_s": start_seconds,
        "start_mb": start_peak,
        "reload_s": time.perf_counter() - started,
        "reload_mb": _own_peak_mb(),
    }
    resident, objects = [], []
    for _ in range(RELOADS):  # does each reload leave the process larger?
        rt.state = load_state(rt, config)
        release_freed_memory()  # as the service does after a reload
        resident.append(_resident_mb())
        objects.append(len(gc.get_objects()))
    figures["growth_mb"] = (resident[-1] - resident[0]) / (len(resident) - 1)
    figures["growth_objects"] = (objects[-1] - objects[0]) / (len(objects) - 1)
    figures["resident_mb"] = [round(r) for r in resident]
    print(json.dumps(figures))


def _resident_mb() -> float:
    """This process's resident memory now (``VmRSS``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS in /proc/self/status: the memory figures need Linux")


def _run(data: Path, cache: Path, state: Path) -> dict:
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.online", "_load", str(data), str(cache), str(state)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        env={**os.environ, "NEXTBEST_PSEUDONYM_KEY": KEY, "MLFLOW_LOGGING_LEVEL": "WARNING"},
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "_load":
        _load(*(Path(x) for x in sys.argv[2:]))
        return
    os.environ["NEXTBEST_PSEUDONYM_KEY"] = KEY
    data = _world(CUSTOMERS)
    cache = _prepare(data)
    warm = cache / "state-warm"  # the first load of a snapshot derives and keeps its scores
    shutil.rmtree(warm, ignore_errors=True)
    warm.mkdir()
    f = _run(data, cache, warm)
    print(f"(a first load, untimed below: start {f['start_s']:.1f} s; its scores are kept)")
    print(f"online log: {CUSTOMERS:,} customers; start-up then reload, each its own peak")
    print(
        f"{'rows':>9} {'log':>9} {'start s':>8} {'MB':>7} {'reload s':>9} {'MB':>7}"
        f" {'MB/reload':>9} {'objects/reload':>14}  ratio"
    )
    base = None
    for rows in ROWS:
        state = cache / f"state-{rows}"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir()
        filled = time.perf_counter()
        _fill(state, data, rows)
        filled = time.perf_counter() - filled
        for when in ("before", "after"):  # the first load compacts; the next starts from it
            f = _run(data, cache, state)
            if base is None:
                base = f
            ratio = (
                f"start {f['start_s'] / base['start_s']:.2f}x,"
                f" reload {f['reload_s'] / base['reload_s']:.2f}x"
            )
            print(
                f"{rows:>9,} {f['entries']:>9,} {f['start_s']:>8.1f} {f['start_mb']:>7,.0f}"
                f" {f['reload_s']:>9.1f} {f['reload_mb']:>7,.0f} {f['growth_mb']:>9.1f}"
                f" {f['growth_objects']:>14,.0f}  {ratio}"
                f" ({when} compaction; log left {f['after']:,})",
                flush=True,
            )
            if rows == 0:
                break
        if rows:
            print(f"{'':>9} (storing the {rows:,} rows took {filled:.1f} s)")


if __name__ == "__main__":
    main()
