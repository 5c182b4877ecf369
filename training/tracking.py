"""Run logging: every training run and every retraining job leaves its record in MLflow.

A run logs parameters, the metrics of the model and of every baseline, plots, the features
manifest and the datasets' digests and schemas (never their rows), and the model in native
formats as an MLflow pyfunc model from code (:mod:`training.packaging`), registered as a new
version and put through the champion gate (:mod:`training.champion`). Runs are named by model
and as-of (``churn 2025-06-30``). The store is chosen by :func:`training.registry.configure`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.types import ColSpec, Schema

from training import packaging, plots
from training.baseline import Choice, better_of
from training.champion import GATE_METRICS, gate
from training.churn import ChurnResult
from training.classifier import model_frame
from training.clv import ClvResult, score_clv
from training.gate import Decision
from training.metrics import calibration_table
from training.next_product import NextProductResult
from training.registry import (
    DESCRIPTIONS,
    FEATURES_TAG,
    JOBS,
    PROFILE,
    PURPOSES,
    REGISTERED,
    experiment,
)
from training.replenishment import ReplenishmentModel, ReplenishmentResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes() + "|".join(frame.columns).encode()).hexdigest()
    types = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer"}
    schema = Schema(
        [ColSpec(types.get(str(dtype), "string"), str(c)) for c, dtype in frame.dtypes.items()]
    )
    source = CodeDatasetSource({"nextbest.dataset": name})
    return MetaDataset(source, name=name, digest=digest[:16], schema=schema)


def _run(kind: str, root, tags: dict | None, as_of: str | None):
    """A run named by model and as-of (``churn 2025-06-30``)."""

    mlflow.set_experiment(experiment_id=experiment(REGISTERED[kind], Path(root).resolve()))
    name = f"{kind} {str(as_of)[:10]}" if as_of else kind
    return mlflow.start_run(
        run_name=name,
        tags={**(tags or {}), "nextbest.purpose": PURPOSES[kind], **code_version()},
    )


@functools.cache
def code_version() -> dict[str, str]:
    """The tags naming the code a run trained with: the package version, and the git
    commit (MLflow's own ``mlflow.source.git.commit``) when the code is a git checkout."""
    import subprocess

    from cdp import package_version

    tags = {"nextbest.version": package_version()}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return tags
    if commit.returncode == 0:
        tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


def _about(params: dict, tags: dict | None, **settings) -> dict:
    """The tags a registered version carries: as-of, data digest, the feature settings it
    was trained with (:data:`training.registry.FEATURES_TAG`), its own settings."""
    return {
        "nextbest.as_of": params.get("as_of"),
        "nextbest.data_digest": (tags or {}).get("nextbest.data_digest"),
        FEATURES_TAG: (tags or {}).get(FEATURES_TAG),
        **{f"nextbest.{k}": v for k, v in settings.items()},
    }


@dataclass(frozen=True)
class _Classifier:
    """What differs between the two calibrated classifiers' runs."""

    label: str  # the validation examples' outcome column
    outcome: str  # the ROC and calibration plots' title
    positives: str  # the lift plot's name for the positive class
    setting: str  # the version's setting tag: the horizon or the window
    event: str  # the calibration plot's name for the event


CLASSIFIERS = {
    "churn": _Classifier(
        "churned", "churn in the horizon (validation)", "churners", "horizon_days", "churn"
    ),
    "replenishment": _Classifier(
        "repurchased",
        "repurchase in the window (validation)",
        "repurchases",
        "window_days",
        "repurchase",
    ),
    "next_product": _Classifier(
        "bought",
        "purchase of the product in the window (validation)",
        "purchases",
        "window_days",
        "purchase",
    ),
}


def log_classifier(
    kind: str,
    result: ChurnResult | ReplenishmentResult | NextProductResult,
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
    """Log a churn, replenishment or next-product training run, register its model, apply
    the gate.

    ``result``: :class:`training.churn.ChurnResult`,
    :class:`training.replenishment.ReplenishmentResult` or
    :class:`training.next_product.NextProductResult`. ``profile``: the reference profile
    of the features at ``as_of`` and of the model's scores on them
    (:func:`training.drift.reference_profile`), for later drift reports (churn)."""

    spec, valid = CLASSIFIERS[kind], dataset["valid"]
    servable = getattr(result, "baselines", None) or {}
    choice = better_of(result.metrics, servable, *GATE_METRICS[kind])
    model = _registered(kind, result, choice)
    classifier = packaging.classifier_of(model)
    y = valid[spec.label].to_numpy()
    curves = getattr(result, "calibration", None) or {
        "model": calibration_table(y, result.scores["model"])
    }
    figures = {
        "roc": plots.roc(y, result.scores, spec.outcome),
        "calibration": plots.calibration(curves, spec.event),
        "lift": plots.lift(y, result.scores, spec.positives),
        "feature_importance": plots.importance(
            classifier.importance(), f"importance in the registered {choice.scorer}"
        ),
    }
    extra = {}
    if getattr(result, "runout_errors", None) is not None:
        figures["runout_errors"] = plots.errors(
            result.runout_errors, "run-out date error on pairs that repurchased"
        )
        extra["runout.scale"] = model.runout.scale_
    examined = packaging.classifier_of(result.model).features_  # the examples' features
    with _run(kind, root, tags, params.get("as_of")) as run:
        mlflow.set_tags({"nextbest.scorer": choice.scorer, "nextbest.scorer_reason": choice.reason})
        _log_common(
            params={
                **params,
                "registered": choice.scorer,
                **{f"model.{k}": v for k, v in classifier.get_params().items()},
                **extra,
            },
            metrics=result.metrics,
            figures=figures,
            inputs={
                f"{kind}-{split}": model_frame(frame, examined) for split, frame in dataset.items()
            },
            manifest=manifest,
            selection=result.selection,
        )
        if profile is not None:
            mlflow.log_dict(profile, PROFILE)
        version = packaging.log_model(
            kind, model, REGISTERED[kind], example=valid, description=DESCRIPTIONS[kind]
        )

        about = _about(params, tags, **{spec.setting: params.get(spec.setting)})
        gating = {"margin": margin, "confidence": confidence, "promote": promote}

        def predict(candidate) -> np.ndarray:
            return packaging.classifier_of(candidate).predict_proba(valid)

        return gate(
            kind, version, run.info.run_id, y, predict, model, about, choice=choice, **gating
        )


def _registered(kind: str, result, choice: Choice):
    """What a training registers: its model, or the baseline ``choice`` names (with the
    run-out model, for replenishment)."""
    if choice.scorer == "model":
        return result.model
    baseline = result.baselines[choice.scorer]
    if kind == "replenishment":
        return ReplenishmentModel(baseline, result.runout)
    return baseline


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
        version = packaging.log_model(
            "clv", model, REGISTERED["clv"], example=holdout, description=DESCRIPTIONS["clv"],
            horizon_days=horizon_days,
        )  # fmt: skip

        about = _about(params, tags, horizon_days=horizon_days)
        gating = {"margin": margin, "confidence": confidence, "promote": promote}

        def predict(candidate) -> np.ndarray:
            return score_clv(candidate, holdout, horizon_days=horizon_days)

        return gate(
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


def start_job(root: str | os.PathLike, tags: dict[str, str]) -> str:
    """Open the run that records one retraining job; return its id."""

    client = MlflowClient()
    experiment_id = experiment(JOBS, Path(root).resolve())
    return client.create_run(experiment_id, tags=tags, run_name="retrain").info.run_id


def log_drift(run_id: str, table: pd.DataFrame, realised: dict | None, figure: Figure) -> None:
    """The drift report of a job: ``drift.json``, ``plots/drift.png``, ``psi.*`` and
    ``realised.*`` metrics (aggregates only)."""
    import matplotlib.pyplot as plt

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

    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.log_dict(run_id, record, "job.json")
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
