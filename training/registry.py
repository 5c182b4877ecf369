"""The model registry and the tracking store: where the store is, what is registered, which
version is champion, and loading a version back.

Default store: SQLite at ``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``;
``MLFLOW_TRACKING_URI`` overrides it. :func:`configure` is the one place the store is chosen.
Importing MLflow configures its logging from ``MLFLOW_LOGGING_LEVEL``: the CLI sets that
before any training module is imported.

One experiment and one registered model per kind:

==========================  =============================  ===================================
registered model            stored as                      gate metric (validation)
==========================  =============================  ===================================
``nextbest-churn``          pyfunc: LightGBM text + JSON   ROC-AUC, higher is better
``nextbest-replenishment``  pyfunc: LightGBM text + JSON   ROC-AUC of repurchase
``nextbest-clv``            pyfunc: JSON (lifetimes)       MAE of holdout spend, lower
``nextbest-next-product``   pyfunc: LightGBM text + JSON   ROC-AUC of a purchase in W days
==========================  =============================  ===================================

Each registered version gets the alias ``challenger``; it becomes ``champion`` only through
the gate (:mod:`training.champion`). Loading a version runs no code from the store but
nextbest's own loader (:mod:`training.packaging`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow import MlflowClient

from training import packaging
from training.churn import ChurnModel
from training.classifier import CalibratedClassifier
from training.clv import ClvModel
from training.replenishment import ReplenishmentModel

if TYPE_CHECKING:
    from training.gate import Decision

CHURN_MODEL = "nextbest-churn"
REPLENISHMENT_MODEL = "nextbest-replenishment"
CLV_MODEL = "nextbest-clv"
NEXT_PRODUCT_MODEL = "nextbest-next-product"
REGISTERED = {
    "churn": CHURN_MODEL,
    "replenishment": REPLENISHMENT_MODEL,
    "clv": CLV_MODEL,
    "next_product": NEXT_PRODUCT_MODEL,
}
#: The description of each registered model (shown in the MLflow UI and by the registry API).
DESCRIPTIONS = {
    "churn": (
        "Probability that a customer places no order within the churn horizon after the"
        " as-of (LightGBM, calibrated). Input: a feature snapshot's customers.parquet rows"
        " (nextbest features); output: churn_probability per customer_id."
    ),
    "replenishment": (
        "Probability that a customer re-buys a consumable within the window, and its"
        " run-out dates (p10, p50, p90). Input: pair rows with customer context and cutoff"
        " (training.replenishment.pair_frame_from); output: repurchase_probability, runout_*."
    ),
    "clv": (
        "Customer lifetime value over the horizon: BG/NBD purchases and Gamma-Gamma order"
        " value (lifetimes). Input: customers.parquet rows (frequency, recency, T,"
        " monetary_value); output: expected purchases and spend, clv_{M}m, p_alive."
    ),
    "next_product": (
        "Probability that a customer buys a candidate product next (LightGBM, calibrated)."
        " Input: candidate rows with their features and cutoff"
        " (training.next_product.candidate_frame); output: purchase_probability."
    ),
}
#: What each model's scores may be used for (purpose limitation): all four drive
#: marketing actions, so the service skips them for customers without marketing consent.
PURPOSES = {
    "churn": "marketing",
    "replenishment": "marketing",
    "clv": "marketing",
    "next_product": "marketing",
}
#: Kinds a data set may lack (no consumables, no candidates): no champion is no error.
OPTIONAL = ("replenishment", "next_product")
#: The churn run's artifact with the reference profile of its training snapshot.
PROFILE = "reference_profile.json"
#: The experiment that records every retraining job.
JOBS = "nextbest-retrain"


def configure(root: str | os.PathLike = "mlruns") -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` (as the user set it) or at a SQLite store in
    ``root``: the one place the store is chosen.

    MLflow's setters also export the URI to ``os.environ``; that is undone, so a later call
    with another ``root`` in the same process (a notebook, a test) is not overridden by the
    first store, and subprocesses get the environment the user gave.

    Parameters
    ----------
    root : str or os.PathLike, default "mlruns"
        The folder of ``mlflow.db`` and ``artifacts/`` (created if missing).

    Returns
    -------
    str
        The tracking (and registry) URI now in use.
    """

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in names}
    root = Path(root).resolve()
    uri = before["MLFLOW_TRACKING_URI"] or f"sqlite:///{root / 'mlflow.db'}"
    root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return uri


def experiment(name: str, root: Path) -> str:
    """The id of experiment ``name``, created with its artifacts under ``root/artifacts``."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return mlflow.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())


# -- loading -------------------------------------------------------------------------------


def _version(name: str, alias: str):
    return MlflowClient().get_model_version_by_alias(name, alias)


def _load(kind: str, alias: str):
    """The model of ``kind`` with ``alias`` from its stored parts (:mod:`training.packaging`),
    and its version."""

    version = _version(REGISTERED[kind], alias)
    folder = Path(mlflow.artifacts.download_artifacts(version.source))
    try:
        model, _ = packaging.load_parts(folder)
    except packaging.CorruptModelError as error:
        raise packaging.CorruptModelError(
            f"{REGISTERED[kind]} v{version.version} ({alias}) is corrupt: {error}; point the"
            f" {alias} alias at a good version, or train again"
        ) from None
    return model, str(version.version)


def load_churn(alias: str = "champion") -> tuple[ChurnModel, str]:
    """The registered churn model with ``alias``, and its version."""
    return _load("churn", alias)


def load_replenishment(alias: str = "champion") -> tuple[ReplenishmentModel, str]:
    """The registered replenishment model (classifier and run-out) with ``alias``."""
    return _load("replenishment", alias)


def load_clv(alias: str = "champion") -> tuple[ClvModel, str]:
    """The registered CLV model (lifetimes parameters) with ``alias``."""
    return _load("clv", alias)


def load_next_product(alias: str = "champion") -> tuple[CalibratedClassifier, str]:
    """The registered next-product classifier with ``alias``."""
    return _load("next_product", alias)


LOADERS = {
    "churn": load_churn,
    "replenishment": load_replenishment,
    "clv": load_clv,
    "next_product": load_next_product,
}


def load(kind: str, alias: str = "champion") -> tuple[object, str]:
    """Load a registered model by alias.

    Parameters
    ----------
    kind : str
        churn, replenishment, clv or next_product.
    alias : str, default "champion"
        The alias (champion or challenger).

    Returns
    -------
    tuple of (model, str)
        The fitted model (its files checked against their SHA-256) and its version.

    Raises
    ------
    mlflow.exceptions.MlflowException
        When no version has the alias.
    CorruptModelError
        When the version's files do not match what was registered.
    """
    return LOADERS[kind](alias)


def load_profile(alias: str = "champion") -> tuple[dict | None, str]:
    """The reference profile logged with the churn model of ``alias`` (``None`` for a model
    trained before profiles were logged), and its version."""

    version = _version(CHURN_MODEL, alias)
    try:
        return mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{PROFILE}"), str(version.version)
    except (mlflow.exceptions.MlflowException, OSError):
        return None, str(version.version)


# -- the champion alias ------------------------------------------------------------------


def promote_champions(decisions: list[Decision]) -> list[Decision]:
    """Move the ``champion`` alias to every version whose gate said promote; return those."""

    client = MlflowClient()
    promoted = [d for d in decisions if d.promoted]
    for d in promoted:
        client.set_registered_model_alias(REGISTERED[d.kind], "champion", d.version)
    return promoted


def discard(decisions: list[Decision]) -> None:
    """Delete the versions of ``decisions`` (a job that failed after registering them); their
    runs stay, marked failed, as the record. Never touches a version that is champion."""

    client = MlflowClient()
    for d in decisions:
        name = REGISTERED[d.kind]
        if "champion" in client.get_model_version(name, d.version).aliases:
            continue
        client.set_tag(d.run_id, "nextbest.discarded", "a later step of the job failed")
        client.set_terminated(d.run_id, status="FAILED")
        client.delete_model_version(name, d.version)


#: The version tag that carries the feature settings a model was trained with (JSON).
FEATURES_TAG = "nextbest.features"


def trained_settings(kind: str, version: str) -> dict | None:
    """The feature settings version ``version`` of ``kind`` was trained with, or None for a
    version trained before the settings travelled with the model."""
    import json

    tags = MlflowClient().get_model_version(REGISTERED[kind], version).tags
    raw = tags.get(FEATURES_TAG)
    return json.loads(raw) if raw else None


def champion_versions() -> dict[str, str]:
    """The champion version of each registered model that has one."""
    from mlflow.exceptions import MlflowException

    client, versions = MlflowClient(), {}
    for kind, name in REGISTERED.items():
        try:
            versions[kind] = str(client.get_model_version_by_alias(name, "champion").version)
        except MlflowException:
            continue
    return versions


def check_reachable() -> None:
    """Raise if the tracking store cannot be read (before any work is done)."""

    MlflowClient().search_experiments(max_results=1)
