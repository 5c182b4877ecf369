"""MLflow: the only module that talks to the tracking store and the model registry.

Default store: SQLite at ``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``;
``MLFLOW_TRACKING_URI`` overrides it. Nothing here runs at import time.

A run logs parameters, the metrics of the model and of every baseline, plots, the features
manifest and the dataset's digest and schema (never its rows), and the model in native
formats: the LightGBM booster as text and its calibration as JSON. Each registered version
gets the alias ``challenger``; it becomes ``champion`` only if it beats the current champion
on the same validation examples by ``margin`` (or if there is none).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import pandas as pd

from training.churn import ChurnModel, ChurnResult
from training.classifier import model_frame
from training.metrics import binary_metrics

CHURN_MODEL = "nextbest-churn"


def configure(root: str | os.PathLike = "mlruns") -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or at a SQLite store in ``root``."""
    import mlflow

    root = Path(root).resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _experiment(name: str, root: Path) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return mlflow.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())


def _plots(result: ChurnResult, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in result.calibration.items():
        ax.plot(curve["predicted"], curve["observed"], marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(
        xlabel="predicted churn probability",
        ylabel="observed churn rate",
        title="calibration on the validation period",
    )
    ax.legend()
    paths.append(folder / "calibration.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    importance = pd.Series(
        result.model.booster_.feature_importance("gain"), index=result.model.features_
    ).nlargest(20)[::-1]
    fig, ax = plt.subplots(figsize=(6, 6))
    importance.plot.barh(ax=ax, title="feature importance (gain)")
    paths.append(folder / "feature_importance.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths


@dataclass(frozen=True)
class Decision:
    """What the champion gate decided for a new version, and on which scores."""

    version: str
    promoted: bool
    challenger_score: float
    champion_score: float | None
    champion_version: str | None
    run_id: str


def load_churn(alias: str = "champion", name: str = CHURN_MODEL) -> tuple[ChurnModel, str]:
    """The registered churn model with ``alias``, and its version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.get_model_version_by_alias(name, alias)
    booster = mlflow.lightgbm.load_model(f"models:/{name}/{version.version}")
    calibration = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/churn_model.json")
    model = ChurnModel.from_parts(booster, calibration["features"], calibration["calibration"])
    return model, str(version.version)


def log_churn(
    result: ChurnResult,
    dataset: dict[str, pd.DataFrame],
    *,
    params: dict,
    manifest: dict | None = None,
    margin: float = 0.0,
    metric: str = "roc_auc",
    root: str | os.PathLike = "mlruns",
) -> Decision:
    """Log a churn training run, register its model, and apply the champion gate."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    root = Path(root).resolve()
    client = MlflowClient()
    valid = dataset["valid"]
    features = model_frame(valid, result.model.features_)
    mlflow.set_experiment(experiment_id=_experiment(CHURN_MODEL, root))
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params(params)
        for scorer, row in result.metrics.iterrows():
            mlflow.log_metrics({f"{scorer}.{k}": float(v) for k, v in row.items()})
        for path in _plots(result, Path(tmp)):
            mlflow.log_artifact(str(path), "plots")
        mlflow.log_dict(
            {k: v.to_dict(orient="list") for k, v in result.calibration.items()},
            "calibration_curves.json",
        )
        if manifest is not None:
            mlflow.log_dict(manifest, "features_manifest.json")
        for split, frame in dataset.items():  # digest and schema only: no customer rows
            rows = model_frame(frame, result.model.features_)
            mlflow.log_input(mlflow.data.from_pandas(rows, name=f"churn-{split}"), context=split)
        model = result.model
        mlflow.log_dict(
            {"features": model.features_, "calibration": model.calibration_},
            "churn_model.json",
        )
        info = mlflow.lightgbm.log_model(
            model.booster_,
            name="model",
            signature=infer_signature(features.head(0), pd.Series([], dtype=float)),
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
            registered_model_name=CHURN_MODEL,
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(CHURN_MODEL, "challenger", version)

        y = valid["churned"].to_numpy()
        challenger = binary_metrics(y, model.predict_proba(valid))[metric]
        try:
            champion_model, champion_version = load_churn("champion")
        except mlflow.exceptions.MlflowException:
            champion_model, champion_version = None, None
        champion = (
            binary_metrics(y, champion_model.predict_proba(valid))[metric]
            if champion_model is not None
            else None
        )
        promoted = champion is None or challenger >= champion + margin
        if promoted:
            client.set_registered_model_alias(CHURN_MODEL, "champion", version)
        mlflow.log_metrics(
            {
                f"gate.challenger_{metric}": challenger,
                **({f"gate.champion_{metric}": champion} if champion is not None else {}),
            }
        )
        mlflow.set_tags(
            {
                "gate.decision": "promoted" if promoted else "kept champion",
                "gate.margin": str(margin),
                "gate.champion_version": str(champion_version),
            }
        )
        mlflow.log_dict(
            {
                "version": version,
                "promoted": promoted,
                "metric": metric,
                "margin": margin,
                "challenger": challenger,
                "champion": champion,
                "champion_version": champion_version,
            },
            "gate.json",
        )
    return Decision(version, promoted, challenger, champion, champion_version, run.info.run_id)
