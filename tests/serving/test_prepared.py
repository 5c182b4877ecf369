"""The scores and drivers a load derives from a snapshot and the champions, kept beside the
snapshot (serving/memory/prepared.py): read back identically, never stale, computed once."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pandas as pd

from serving.memory.prepared import FOLDER, Prepared, kept_or_derived, prepared_key


def _served(state) -> dict:
    """What a request reads of each customer, as plain values."""
    return {
        customer_id: (
            c.churn_probability,
            c.clv_12m,
            c.p_alive,
            c.churn_drivers,
            c.next_products,
            c.next_purchase,
            {
                p: (i.repurchase_probability, i.expected_next_purchase_at)
                for p, i in c.consumables.items()
            },
            c.last_order_at,
            c.consents,
            c.recent_orders,
        )
        for customer_id, c in state.customers.items()
    }


def test_a_second_load_reads_the_kept_scores_and_serves_the_same_state(
    world, small_world_dir, tmp_path
):
    from serving.memory.snapshot import load_snapshot
    from training import registry

    registry.configure(world / "mlruns")
    features = tmp_path / "features"
    shutil.copytree(world / "features", features, ignore=shutil.ignore_patterns(FOLDER))
    first = load_snapshot(data=small_world_dir, features=features)
    kept = [p for p in (features / FOLDER).iterdir() if not p.name.startswith(".")]
    assert len(kept) == 1 and (kept[0] / "done.json").is_file()
    assert {p.name for p in kept[0].glob("*.parquet")} >= {
        "churn.parquet",
        "churn_drivers.parquet",
        "next_products.parquet",
    }
    second = load_snapshot(data=small_world_dir, features=features)
    assert _served(second) == _served(first)
    assert any(c.next_products for c in second.customers.values())
    assert any(c.churn_drivers for c in second.customers.values())

    # the second load read them: a value changed in the kept table is what is served
    churn = pd.read_parquet(kept[0] / "churn.parquet")
    someone = churn["customer_id"].iloc[0]
    churn.loc[0, "churn_probability"] = 0.123456
    churn.to_parquet(kept[0] / "churn.parquet", index=False)
    third = load_snapshot(data=small_world_dir, features=features)
    assert third.customers[someone].churn_probability == 0.123456


def test_the_key_changes_with_the_snapshot_the_data_and_every_champion(
    world, small_world_dir, tmp_path
):
    import json

    from training import registry
    from training.scoring import load_champions

    registry.configure(world / "mlruns")
    champions, _ = load_champions()
    again, _ = load_champions()  # loaded twice from the store: the same models
    manifest = json.loads((world / "features" / "manifest.json").read_text())
    data = tmp_path / "data"
    shutil.copytree(small_world_dir, data)
    key = prepared_key(manifest, data, champions)
    assert prepared_key(manifest, data, again) == key

    assert prepared_key({**manifest, "as_of": "2020-01-01T00:00:00+00:00"}, data, champions) != key
    orders = next(data.glob("orders*"))
    stat = orders.stat()
    os.utime(orders, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = prepared_key(manifest, data, champions)
    assert touched != key
    for kind in champions:
        other = dict(again)
        model = load_champions()[0][kind]
        if kind == "clv":
            model.mean_repeat_value_ = model.mean_repeat_value_ * 1.01
        else:
            classifier = getattr(model, "classifier", model)
            classifier.calibration_ = {**classifier.calibration_, "slope": 0.5}
        other[kind] = model
        assert prepared_key(manifest, data, other) != touched, kind


def _tiny() -> Prepared:
    frame = pd.DataFrame({"customer_id": ["c1"], "churn_probability": [0.4]})
    return Prepared(
        churn=frame,
        clv=pd.DataFrame({"customer_id": ["c1"], "p_alive": [0.9]}),
        churn_drivers=pd.DataFrame({"customer_id": ["c1"], "drivers": [("recency_high",)]}),
    )


def test_loads_at_once_compute_once_and_a_new_key_replaces_the_old(tmp_path):
    calls = []

    def compute() -> Prepared:
        calls.append(threading.get_ident())
        time.sleep(0.5)
        return _tiny()

    got = []
    threads = [
        threading.Thread(target=lambda: got.append(kept_or_derived(tmp_path, "k1", compute)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1, "one load computes, the others wait and read"
    assert [g.churn_drivers["drivers"].iloc[0] for g in got] == [("recency_high",)] * 3
    kept_or_derived(tmp_path, "k2", compute)
    assert len(calls) == 2
    assert sorted(p.name for p in (tmp_path / FOLDER).iterdir() if not p.name.startswith(".")) == [
        "k2"
    ]
