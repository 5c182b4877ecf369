"""Every door agrees on consent, whatever the order rows arrive in: a property test over random
interleavings of CDP times (before and after the snapshot's as-of), arrival order, resends,
reloads and restarts, on a real trained store and real state folders.

The doors: the service's runtime (what ``nextbest serve`` answers with, rows sent as
``POST /events`` sends them), a second runtime on the same ``--state`` started before the
rows (what ``nextbest mcp`` beside the service is), and ``nextbest suggest --state``'s
reading of the log (:func:`serving.outbound.with_online_rows`) at the end of each run.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.io import write_tables
from cdp.world.config import WorldConfig
from cdp.world.generate import generate_world
from conftest import AS_OF, PSEUDONYM_KEY, once_per_run

pytestmark = pytest.mark.heavy  # trains a store: not in `make test-fast`

NOW = AS_OF + pd.Timedelta(hours=12)
PEOPLE = 3  # customers whose consent the runs move


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 600-customer world with its snapshot and champions (trained once per run)."""

    def build(folder: Path) -> None:
        world = generate_world(WorldConfig(customers=600, seed=5, as_of=AS_OF))
        write_tables(world.tables, folder / "data", "parquet")
        common = ["--data", str(folder / "data"), "--as-of", AS_OF.date().isoformat()]
        exe = shutil.which("nextbest") or "nextbest"
        for command, out in (("features", "--out"), ("train", "--mlruns")):
            target = folder / ("features" if command == "features" else "mlruns")
            done = subprocess.run(
                [exe, command, *common, out, str(target)], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr[-2000:]

    return once_per_run(tmp_path_factory, "tiny-trained-world", build)


@pytest.fixture()
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("NEXTBEST_PSEUDONYM_KEY", PSEUDONYM_KEY)


STEP = st.one_of(
    st.tuples(
        st.just("send"),
        st.integers(0, PEOPLE - 1),  # whose
        st.booleans(),  # granted
        st.integers(-72 * 60, 11 * 60),  # minutes from the as-of: late rows too
    ),
    st.tuples(st.just("resend")),
    st.tuples(st.just("reload")),
    st.tuples(st.just("restart")),
)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(STEP, min_size=1, max_size=7))
def test_every_door_agrees_on_consent_after_every_step(tiny, pseudonym_key, steps):
    from serving import answers
    from serving.config import ServeConfig
    from serving.mcp import load_runtime
    from serving.memory.runtime import load_state
    from serving.memory.snapshot import load_snapshot
    from serving.outbound import with_online_rows
    from serving.schemas import EventBatch, SuggestRequest

    folder = Path(tempfile.mkdtemp(prefix="doors-"))
    config = ServeConfig(
        data=tiny / "data",
        features=tiny / "features",
        mlruns=tiny / "mlruns",
        state=folder,
        now=NOW.to_pydatetime(),
    )
    consents = pd.read_parquet(tiny / "data" / "consents.parquet")
    customers = pd.read_parquet(tiny / "features" / "customers.parquet")
    buyers = customers.loc[customers["purchase_days"] > 0, "customer_id"].head(PEOPLE).tolist()
    marketing = consents[consents["purpose"] == "marketing"]
    history = {}  # customer -> every marketing record acknowledged: (CDP time, granted)
    for customer in buyers:
        mine = marketing[marketing["customer_id"] == customer]
        records = zip(mine["recorded_at"], mine["granted"].astype(bool), strict=True)
        history[customer] = list(records)
    taken = {t for records in history.values() for t, _ in records}
    service = load_runtime(config)
    beside = load_runtime(config)  # `nextbest mcp` on the same --state, started before the rows
    sent: list[dict] = []

    def expected(customer: str) -> bool:
        records = [r for r in history[customer] if r[0] <= NOW]
        if not records:
            return False
        return max(records)[1]

    for step in steps:
        if step[0] == "send":
            _, who, granted, minutes = step
            at = AS_OF + pd.Timedelta(minutes=minutes, seconds=1 + len(sent))  # never a tie
            if at in taken:
                continue
            taken.add(at)
            row = {"customer_id": buyers[who], "purpose": "marketing", "granted": granted,
                   "recorded_at": at.isoformat(), "source": "cdp"}  # fmt: skip
            answers.ingest(service, EventBatch.model_validate({"consents": [row]}))
            history[buyers[who]].append((at, granted))
            sent.append(row)
        elif step[0] == "resend" and sent:
            answers.ingest(service, EventBatch.model_validate({"consents": [sent[-1]]}))
        elif step[0] == "reload":
            service.state = load_state(service, config)
        elif step[0] == "restart":
            service = load_runtime(config)
        for customer in buyers:
            want = expected(customer)
            assert answers.consent_of(service, customer, "marketing", "/profile") == want
            assert answers.consent_of(beside, customer, "marketing", "mcp") == want
            if not want:
                answer = answers.suggest_one(service, SuggestRequest(customer_id=customer))
                assert all(a.purpose != "marketing" for a in answer.actions), answer.actions
    state = load_snapshot(data=config.data, features=config.features)
    with_online_rows(state, folder, config.mlruns, NOW.to_pydatetime())
    for customer in buyers:
        assert state.allows(customer, "marketing", NOW.to_pydatetime()) == expected(customer)
    shutil.rmtree(folder, ignore_errors=True)
