"""What a served state derives from a snapshot and the champions, computed once and kept.

Every customer's scores, churn drivers (TreeSHAP) and best next products with their drivers
depend only on the feature snapshot, the contract folder it was built from and the champion
models. They are the bulk of a load (on the 100,000-customer benchmark world: 42 s of
TreeSHAP and 10 s of scoring out of 88 s), so the first load after a new snapshot or new
champions computes them and writes them beside the snapshot, in ``prepared/KEY/``; every
later start, reload, worker, ``nextbest mcp`` and ``nextbest suggest --state`` reads them.
``KEY`` is a digest of the snapshot's manifest, the contract files' sizes and modification
times, and each champion's learned values (:func:`training.packaging.fingerprint`), so a new
snapshot, changed data or a new champion can never be served stale scores. A snapshot folder
that cannot be written to (mounted read-only) is served all the same, computing every time.

Memory: rows grow with customers (one per buyer), their consumable pairs, and
:data:`NEXT_PRODUCTS` next products per customer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from policy.drivers import top_drivers

logger = logging.getLogger("nextbest.serving")

#: Next-product candidates kept per customer (owned ones are left out at request time).
NEXT_PRODUCTS = 5
#: The layout of a ``prepared/KEY/`` folder; a change gives every key a new digest.
FORMAT = 2
FOLDER = "prepared"
TABLES = ("churn", "clv", "replenishment", "churn_drivers", "next_products", "next_purchase")


@dataclass
class Prepared:
    """The derived tables of one snapshot under one set of champions.

    ``churn`` (customer_id, churn_probability) and ``clv`` (customer_id, p_alive, clv...) for
    every buyer; ``replenishment`` (customer_id, product_id, repurchase_probability and
    run-out dates) per pair, when there is a replenishment champion; ``churn_drivers``
    (customer_id, drivers: the codes raising the churn score most); ``next_products``
    (customer_id, product_id, purchase_probability, drivers: each customer's
    :data:`NEXT_PRODUCTS` most likely candidates) and ``next_purchase``
    (customer_id, family, purchase_probability of the families they buy already), when there
    is a next-product champion.
    """

    churn: pd.DataFrame
    clv: pd.DataFrame
    churn_drivers: pd.DataFrame
    replenishment: pd.DataFrame | None = None
    next_products: pd.DataFrame | None = None
    next_purchase: pd.DataFrame | None = None

    @property
    def scores(self) -> dict[str, pd.DataFrame]:
        """The model scores by kind (what :func:`training.scoring.score_frames` returns)."""
        out = {"churn": self.churn, "clv": self.clv}
        if self.replenishment is not None:
            out["replenishment"] = self.replenishment
        return out


def prepared_key(manifest: dict, data: Path, champions: dict) -> str:
    """The digest naming what :func:`derive` computes from these inputs."""
    from cdp.io import locate_tables
    from training.packaging import fingerprint

    located, _ = locate_tables(Path(data))
    files = sorted(
        (str(p.relative_to(data)), p.stat().st_size, p.stat().st_mtime_ns)
        for path in located.values()
        for p in ([path] if path.is_file() else sorted(path.rglob("*.parquet")))
    )
    identity = {
        "format": FORMAT,
        "next_products": NEXT_PRODUCTS,
        "manifest": manifest,
        "data": files,
        "champions": {kind: fingerprint(kind, model) for kind, model in sorted(champions.items())},
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def derive(
    tables: dict,
    customers: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    as_of,
    champions: dict,
    versions: dict[str, str],
    config,
) -> Prepared:
    """Score every customer and pair, find each customer's churn drivers and best next
    products (with their drivers)."""
    from cdp.contract import ContractTables
    from training.scoring import score_candidates, score_frames

    scores = score_frames(
        customers, pairs, as_of=as_of, champions=champions, versions=versions, config=config
    )
    model = champions["churn"]
    buyers = customers[customers["purchase_days"] > 0]
    drivers = top_drivers(model.contributions(buyers), buyers[model.features_])
    out = Prepared(
        churn=scores["churn"],
        clv=scores["clv"],
        replenishment=scores.get("replenishment"),
        churn_drivers=pd.DataFrame(
            {"customer_id": buyers["customer_id"].to_numpy(), "drivers": drivers.to_numpy()}
        ),
    )
    scored = score_candidates(
        ContractTables(**tables),  # the tables read already, not the folder again
        customers,
        pairs,
        as_of=as_of,
        champions=champions,
        versions=versions,
        config=config,
    )
    if scored is not None:
        out.next_products, out.next_purchase = _next_products(champions["next_product"], scored)
    return out


def _next_products(model, scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each customer's :data:`NEXT_PRODUCTS` most likely candidates (then by expected value)
    with their own drivers (TreeSHAP of the next-product model), and the probability of each
    family they buy already."""
    scored = scored.assign(ev=scored["purchase_probability"] * scored["price"])
    refills = scored[scored["family_purchase_days"] > 0]  # families they buy already
    likely = (
        refills.groupby(["customer_id", "family"], as_index=False, observed=True)[
            "purchase_probability"
        ]
        .max()
        .astype({"family": "str"})
    )
    top = (
        scored.sort_values(
            ["customer_id", "purchase_probability", "ev"],
            ascending=[True, False, False],
            kind="stable",
        )
        .groupby("customer_id", sort=False)
        .head(NEXT_PRODUCTS)
    )
    drivers = top_drivers(model.contributions(top), top[model.features_])
    best = pd.DataFrame(
        {
            "customer_id": top["customer_id"].to_numpy(),
            "product_id": top["product_id"].astype(str).to_numpy(),
            "purchase_probability": top["purchase_probability"].to_numpy(dtype=float),
            "drivers": drivers.to_numpy(),
        }
    )
    return best, likely


def kept_or_derived(features: Path, key: str, compute: Callable[[], Prepared]) -> Prepared:
    """The tables kept for ``key``, or ``compute()`` kept for the next load. Loads of the same
    snapshot at once (a service's workers) take turns: one computes, the others then read."""
    found = read_prepared(features, key)
    if found is not None:
        return found
    with _turn(Path(features) / FOLDER):
        found = read_prepared(features, key)
        if found is not None:
            return found
        made = compute()
        write_prepared(features, key, made)
        return made


@contextlib.contextmanager
def _turn(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root/.lock`` while the block runs; none on a folder that cannot
    be written to."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / ".lock", "a")  # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_prepared(features: Path, key: str) -> Prepared | None:
    """The tables kept for ``key`` beside the snapshot ``features``; None when there are
    none (or they cannot be read: they are computed again)."""
    folder = Path(features) / FOLDER / key
    if not (folder / "done.json").is_file():
        return None
    try:
        frames = {
            name: pd.read_parquet(folder / f"{name}.parquet")
            for name in TABLES
            if (folder / f"{name}.parquet").is_file()
        }
        for name in ("churn_drivers", "next_products"):
            if name in frames:  # lists come back as arrays: the state holds tuples
                frames[name]["drivers"] = [tuple(d) for d in frames[name]["drivers"]]
        return Prepared(**frames)
    except (OSError, ValueError, TypeError) as error:
        logger.warning("prepared scores in %s unreadable (%s): computing them", folder, error)
        return None


def write_prepared(features: Path, key: str, prepared: Prepared) -> bool:
    """Keep ``prepared`` beside the snapshot (atomically) and drop the folders of other keys
    (older champions or data); False when the snapshot folder cannot be written to."""
    from cdp.io import atomic_folder

    root = Path(features) / FOLDER
    if (root / key / "done.json").is_file():  # another worker kept them first
        return True
    try:
        with atomic_folder(root / key, overwrite=True) as tmp:
            for name in TABLES:
                frame = getattr(prepared, name)
                if frame is not None:
                    out = frame.copy()
                    if "drivers" in out:
                        out["drivers"] = [list(d) for d in out["drivers"]]
                    out.to_parquet(tmp / f"{name}.parquet", index=False)
            (tmp / "done.json").write_text(json.dumps({"format": FORMAT}) + "\n")
    except OSError as error:
        logger.warning("prepared scores not kept in %s (%s)", root, error)
        return False
    for other in root.iterdir():
        if other.name != key and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return True
