"""MLflow: the only module that talks to the tracking store and the model registry.

Default store: SQLite at ``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``;
``MLFLOW_TRACKING_URI`` overrides it. Nothing here runs at import time.

One experiment and one registered model per kind:

==========================  =============================  ===================================
registered model            stored as                      gate metric (validation)
==========================  =============================  ===================================
``nextbest-churn``          pyfunc: LightGBM text + JSON   ROC-AUC, higher is better
``nextbest-replenishment``  pyfunc: LightGBM text + JSON   ROC-AUC of repurchase
``nextbest-clv``            pyfunc: JSON (lifetimes)       MAE of holdout spend, lower
==========================  =============================  ===================================

A run logs parameters, the metrics of the model and of every baseline, plots, the features
manifest and the datasets' digests and schemas (never their rows), and the model in native
formats as an MLflow pyfunc model from code (:mod:`training.packaging`): no pickles, so loading
a model runs no code from the store but nextbest's own loader. Each registered
version gets the alias ``challenger``; it becomes ``champion`` only if it beats the current
champion on the same validation examples by the gate's margin (or if there is none). The
decision and both scores are logged with the run (tags, metrics and ``gate.json``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training import packaging, plots
from training.churn import ChurnModel, ChurnResult
from training.classifier import model_frame
from training.clv import ClvModel, ClvResult, score_clv
from training.gate import Gate
from training.metrics import calibration_table
from training.replenishment import ReplenishmentModel, ReplenishmentResult

CHURN_MODEL = "nextbest-churn"
REPLENISHMENT_MODEL = "nextbest-replenishment"
CLV_MODEL = "nextbest-clv"
REGISTERED = {"churn": CHURN_MODEL, "replenishment": REPLENISHMENT_MODEL, "clv": CLV_MODEL}
#: What each model's scores may be used for (purpose limitation): all three drive
#: marketing actions, so the service skips them for customers without marketing consent.
PURPOSES = {"churn": "marketing", "replenishment": "marketing", "clv": "marketing"}
#: The churn run's artifact with the reference profile of its training snapshot.
PROFILE = "reference_profile.json"


def configure(root: str | os.PathLike = "mlruns") -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` (as the user set it) or at a SQLite store in
    ``root``.

    MLflow's setters also export the URI to ``os.environ``; that is undone, so a later call
    with another ``root`` in the same process (a notebook, a test) is not overridden by the
    first store, and subprocesses get the environment the user gave."""
    import mlflow

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


def _experiment(name: str, root: Path) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return mlflow.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())


@dataclass(frozen=True)
class Decision:
    """What the champion gate decided for a new version, and on which scores."""

    kind: str
    version: str
    promoted: bool
    metric: str
    challenger_score: float
    champion_score: float | None
    champion_version: str | None
    run_id: str
    reason: str = ""


# -- loading -------------------------------------------------------------------------------


def _version(name: str, alias: str):
    from mlflow import MlflowClient

    return MlflowClient().get_model_version_by_alias(name, alias)


def _load(kind: str, alias: str):
    """The model of ``kind`` with ``alias`` from its stored parts (:mod:`training.packaging`),
    and its version."""
    import mlflow

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


LOADERS = {"churn": load_churn, "replenishment": load_replenishment, "clv": load_clv}


def load(kind: str, alias: str = "champion"):
    """``(model, version)`` of the registered model of ``kind`` with ``alias``."""
    return LOADERS[kind](alias)


def load_profile(alias: str = "champion") -> tuple[dict | None, str]:
    """The reference profile logged with the churn model of ``alias`` (``None`` for a model
    trained before profiles were logged), and its version."""
    import mlflow

    version = _version(CHURN_MODEL, alias)
    try:
        return mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{PROFILE}"), str(version.version)
    except (mlflow.exceptions.MlflowException, OSError):
        return None, str(version.version)


# -- the champion alias ------------------------------------------------------------------


def promote_champions(decisions: list[Decision]) -> list[Decision]:
    """Move the ``champion`` alias to every version whose gate said promote; return those."""
    from mlflow import MlflowClient

    client = MlflowClient()
    promoted = [d for d in decisions if d.promoted]
    for d in promoted:
        client.set_registered_model_alias(REGISTERED[d.kind], "champion", d.version)
    return promoted


def discard(decisions: list[Decision]) -> None:
    """Delete the versions of ``decisions`` (a job that failed after registering them); their
    runs stay, marked failed, as the record. Never touches a version that is champion."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for d in decisions:
        name = REGISTERED[d.kind]
        if "champion" in client.get_model_version(name, d.version).aliases:
            continue
        client.set_tag(d.run_id, "nextbest.discarded", "a later step of the job failed")
        client.set_terminated(d.run_id, status="FAILED")
        client.delete_model_version(name, d.version)


def champion_versions() -> dict[str, str]:
    """The champion version of each registered model that has one."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, versions = MlflowClient(), {}
    for kind, name in REGISTERED.items():
        try:
            versions[kind] = str(client.get_model_version_by_alias(name, "champion").version)
        except MlflowException:
            continue
    return versions


# -- logging -------------------------------------------------------------------------------


def _log_common(
    *,
    params: dict,
    metrics: pd.DataFrame,
    figures: dict,
    inputs: dict[str, pd.DataFrame],
    manifest: dict | None,
    selection: pd.DataFrame | None,
) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_params(params)
    for scorer, row in metrics.iterrows():
        mlflow.log_metrics({f"{scorer}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
    mlflow.log_dict(metrics.reset_index().to_dict(orient="records"), "metrics_table.json")
    for name, fig in figures.items():
        mlflow.log_figure(fig, f"plots/{name}.png")
        plt.close(fig)
    if manifest is not None:
        mlflow.log_dict(manifest, "features_manifest.json")
    if selection is not None:
        mlflow.log_dict(selection.to_dict(orient="records"), "selection.json")
    for split, frame in inputs.items():  # digest and schema only: no customer rows
        mlflow.log_input(_dataset(frame, split), context=split)
        mlflow.log_param(f"rows.{split}", len(frame))


def _dataset(frame: pd.DataFrame, name: str):
    """A metadata-only MLflow dataset: name, digest and schema, no rows and no values.

    The digest hashes every value (vectorised); the schema comes from the dtypes, so
    logging a million-row dataset costs a hash, not MLflow's per-value schema inference.
    """
    import hashlib

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes() + "|".join(frame.columns).encode()).hexdigest()
    types = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer"}
    schema = Schema(
        [ColSpec(types.get(str(dtype), "string"), str(c)) for c, dtype in frame.dtypes.items()]
    )
    source = CodeDatasetSource({"nextbest.dataset": name})
    return MetaDataset(source, name=name, digest=digest[:16], schema=schema)


#: Each kind's gate metric on its validation examples, and whether higher is better.
GATE_METRICS = {
    "churn": ("roc_auc", True),
    "replenishment": ("roc_auc", True),
    "clv": ("mae", False),
}


def _gate(
    kind: str,
    version: str,
    run_id: str,
    y: np.ndarray,
    predict: Callable[[object], np.ndarray],
    challenger_model,
    about: dict,
    *,
    margin: float,
    confidence: float,
    promote: bool,
) -> Decision:
    """Alias the new version ``challenger`` and decide whether it beats the champion on the
    same validation examples (``predict(model)`` against ``y``, :mod:`training.gate`); promote
    it at once if ``promote``, else leave that to :func:`promote_champions`. A failure before
    the decision is logged deletes the new version: no version is left without its decision.
    ``about``: the version's tags (as-of, data digest), with the decision added."""
    from mlflow import MlflowClient

    gate = Gate(*GATE_METRICS[kind], margin=margin, confidence=confidence)
    try:
        decision = _decide(kind, version, run_id, y, predict, challenger_model, gate)
        _describe(decision, gate, about)
    except BaseException:
        MlflowClient().delete_model_version(REGISTERED[kind], version)
        raise
    if promote:
        promote_champions([decision])
    return decision


def _decide(kind, version, run_id, y, predict, challenger_model, gate: Gate) -> Decision:
    import mlflow
    from mlflow import MlflowClient

    name = REGISTERED[kind]
    client = MlflowClient()
    client.set_registered_model_alias(name, "challenger", version)
    try:
        champion_model, champion_version = load(kind, "champion")
    except mlflow.exceptions.MlflowException:
        champion_model, champion_version = None, None
    champion = None if champion_model is None else predict(champion_model)
    verdict = gate.judge(y, predict(challenger_model), champion)
    m = gate.metric
    mlflow.log_metrics(
        {
            f"gate.challenger_{m}": verdict.challenger,
            **({f"gate.champion_{m}": verdict.champion} if champion is not None else {}),
            **({"gate.improvement_lower": verdict.lower} if verdict.lower is not None else {}),
        }
    )
    mlflow.set_tags(
        {
            "gate.decision": "promoted" if verdict.promoted else "kept champion",
            "gate.margin": str(gate.margin),
            "gate.confidence": str(gate.confidence),
            "gate.champion_version": str(champion_version),
            "gate.reason": verdict.reason,
        }
    )
    decision = Decision(
        kind,
        version,
        verdict.promoted,
        m,
        verdict.challenger,
        verdict.champion,
        champion_version,
        run_id,
        verdict.reason,
    )
    mlflow.log_dict(
        {**decision.__dict__, "margin": gate.margin, "confidence": gate.confidence}, "gate.json"
    )
    return decision


DESCRIPTIONS = {
    "churn": "Probability that a customer who has bought places no order in the next"
    " {horizon_days} days. Input: customers.parquet of `nextbest features`.",
    "replenishment": "Probability that a customer re-buys a consumable in the next"
    " {window_days} days, and its run-out dates (p10/p50/p90). Input: pair features with"
    " customer context (training.replenishment.pair_frame_from).",
    "clv": "BG/NBD and Gamma-Gamma: expected purchases, spend and 12-month value per customer."
    " Input: customers.parquet of `nextbest features`.",
}


def _describe(decision: Decision, gate: Gate, about: dict) -> None:
    """Tag the new version with its as-of, data digest and gate decision, and describe it."""
    from mlflow import MlflowClient

    client, name = MlflowClient(), REGISTERED[decision.kind]
    tags = {
        **{k: str(v) for k, v in about.items() if v is not None},
        "gate.decision": "promoted" if decision.promoted else "kept champion",
        "gate.reason": decision.reason,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.version, key, value)
    text = DESCRIPTIONS[decision.kind].format(
        horizon_days=about.get("nextbest.horizon_days") or "H",
        window_days=about.get("nextbest.window_days") or "W",
    )
    as_of = about.get("nextbest.as_of") or "an unrecorded as-of"
    client.update_model_version(
        name,
        decision.version,
        description=f"{text} Trained as of {as_of}; gate ({gate.metric}): {decision.reason}.",
    )


def _run(kind: str, root, tags: dict | None, as_of: str | None):
    """A run named by model and as-of (``churn 2025-06-30``)."""
    import mlflow

    mlflow.set_experiment(experiment_id=_experiment(REGISTERED[kind], Path(root).resolve()))
    name = f"{kind} {str(as_of)[:10]}" if as_of else kind
    return mlflow.start_run(
        run_name=name, tags={**(tags or {}), "nextbest.purpose": PURPOSES[kind]}
    )


def _about(params: dict, tags: dict | None, **settings) -> dict:
    """The tags a registered version carries: as-of, data digest, settings."""
    return {
        "nextbest.as_of": params.get("as_of"),
        "nextbest.data_digest": (tags or {}).get("nextbest.data_digest"),
        **{f"nextbest.{k}": v for k, v in settings.items()},
    }


def log_churn(
    result: ChurnResult,
    dataset: dict[str, pd.DataFrame],
    *,
    params: dict,
    manifest: dict | None = None,
    margin: float = 0.0,
    confidence: float = 0.95,
    root: str | os.PathLike = "mlruns",
    tags: dict | None = None,
    promote: bool = True,
    profile: dict | None = None,
) -> Decision:
    """Log a churn training run, register its model, and apply the champion gate.

    ``profile``: the reference profile of the features at ``as_of`` and of the model's
    scores on them (:func:`training.drift.reference_profile`), for later drift reports."""
    import mlflow

    valid, model = dataset["valid"], result.model
    y = valid["churned"].to_numpy()
    with _run("churn", root, tags, params.get("as_of")) as run:
        _log_common(
            params={**params, **{f"model.{k}": v for k, v in model.get_params().items()}},
            metrics=result.metrics,
            figures={
                "roc": plots.roc(y, result.scores, "churn in the horizon (validation)"),
                "calibration": plots.calibration(result.calibration, "churn"),
                "lift": plots.lift(y, result.scores, "churners"),
                "feature_importance": plots.importance(model.booster_, model.features_),
            },
            inputs={
                f"churn-{split}": model_frame(frame, model.features_)
                for split, frame in dataset.items()
            },
            manifest=manifest,
            selection=result.selection,
        )
        if profile is not None:
            mlflow.log_dict(profile, PROFILE)
        version = packaging.log_model("churn", model, CHURN_MODEL)

        about = _about(params, tags, horizon_days=params.get("horizon_days"))
        gating = {"margin": margin, "confidence": confidence, "promote": promote}

        def predict(candidate) -> np.ndarray:
            return candidate.predict_proba(valid)

        return _gate("churn", version, run.info.run_id, y, predict, model, about, **gating)


def log_replenishment(
    result: ReplenishmentResult,
    dataset: dict[str, pd.DataFrame],
    *,
    params: dict,
    manifest: dict | None = None,
    margin: float = 0.0,
    confidence: float = 0.95,
    root: str | os.PathLike = "mlruns",
    tags: dict | None = None,
    promote: bool = True,
) -> Decision:
    """Log a replenishment training run, register its model, and apply the champion gate."""

    valid, model = dataset["valid"], result.model
    classifier = model.classifier
    y = valid["repurchased"].to_numpy()
    with _run("replenishment", root, tags, params.get("as_of")) as run:
        _log_common(
            params={
                **params,
                **{f"model.{k}": v for k, v in classifier.get_params().items()},
                "runout.scale": model.runout.scale_,
            },
            metrics=result.metrics,
            figures={
                "roc": plots.roc(y, result.scores, "repurchase in the window (validation)"),
                "calibration": plots.calibration(
                    {"model": calibration_table(y, result.scores["model"])}, "repurchase"
                ),
                "lift": plots.lift(y, result.scores, "repurchases"),
                "feature_importance": plots.importance(classifier.booster_, classifier.features_),
                "runout_errors": plots.errors(
                    result.runout_errors, "run-out date error on pairs that repurchased"
                ),
            },
            inputs={
                f"replenishment-{split}": model_frame(frame, classifier.features_)
                for split, frame in dataset.items()
            },
            manifest=manifest,
            selection=result.selection,
        )
        version = packaging.log_model("replenishment", model, REPLENISHMENT_MODEL)

        about = _about(params, tags, window_days=params.get("window_days"))
        gating = {"margin": margin, "confidence": confidence, "promote": promote}

        def predict(candidate) -> np.ndarray:
            return candidate.classifier.predict_proba(valid)

        return _gate("replenishment", version, run.info.run_id, y, predict, model, about, **gating)


def log_clv(
    result: ClvResult,
    holdout: pd.DataFrame,
    *,
    params: dict,
    horizon_days: int,
    margin: float = 0.0,
    confidence: float = 0.95,
    root: str | os.PathLike = "mlruns",
    tags: dict | None = None,
    promote: bool = True,
) -> Decision:
    """Log a CLV run (a pyfunc model of the lifetimes parameters), register, gate on MAE.

    ``holdout``: the validation customers with ``holdout_spend``
    (:func:`training.clv.clv_holdout`).
    """
    model = result.model
    with _run("clv", root, tags, params.get("as_of")) as run:
        _log_common(
            params={**params, **{f"model.{k}": v for k, v in _flat(model.to_dict()).items()}},
            metrics=result.metrics,
            figures={"spend_capture": plots.lift(result.actual, result.scores, "holdout spend")},
            inputs={"clv-holdout": holdout[["frequency", "recency", "T", "monetary_value"]]},
            manifest=None,
            selection=None,
        )
        version = packaging.log_model("clv", model, CLV_MODEL, horizon_days=horizon_days)

        about = _about(params, tags, horizon_days=horizon_days)
        gating = {"margin": margin, "confidence": confidence, "promote": promote}

        def predict(candidate) -> np.ndarray:
            return score_clv(candidate, holdout, horizon_days=horizon_days)

        return _gate(
            "clv",
            str(version),
            run.info.run_id,
            holdout["holdout_spend"].to_numpy(),
            predict,
            model,
            about,
            **gating,
        )


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# -- the retraining job's record -----------------------------------------------------------

JOBS = "nextbest-retrain"


def check_reachable() -> None:
    """Raise if the tracking store cannot be read (before any work is done)."""
    from mlflow import MlflowClient

    MlflowClient().search_experiments(max_results=1)


def start_job(root: str | os.PathLike, tags: dict[str, str]) -> str:
    """Open the run that records one retraining job; return its id."""
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = _experiment(JOBS, Path(root).resolve())
    return client.create_run(experiment, tags=tags, run_name="retrain").info.run_id


def log_drift(run_id: str, table: pd.DataFrame, realised: dict | None, figure) -> None:
    """The drift report of a job: ``drift.json``, ``plots/drift.png``, ``psi.*`` and
    ``realised.*`` metrics (aggregates only)."""
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient()
    client.log_dict(
        run_id, {"psi": table.to_dict(orient="records"), "realised": realised}, "drift.json"
    )
    client.log_figure(run_id, figure, "plots/drift.png")
    plt.close(figure)
    for row in table.itertuples():
        if pd.notna(row.psi):
            client.log_metric(run_id, f"psi.{row.feature}", float(row.psi))
    for name, value in (realised or {}).items():
        if isinstance(value, float):
            client.log_metric(run_id, f"realised.{name}", value)


def end_job(run_id: str, *, failed: bool, tags: dict[str, str], record: dict) -> None:
    """Close a job's run with its outcome (tags and ``job.json``)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.log_dict(run_id, record, "job.json")
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
