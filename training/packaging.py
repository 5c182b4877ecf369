"""How a nextbest model is stored in MLflow: a pyfunc model "from code", no pickles.

Every registered version (churn, replenishment, CLV, next product) is an MLflow
``python_function`` model whose loader is the file :mod:`training.pyfunc_model`, stored
beside two artifacts:

- ``model.json``: the model's kind and its learned values (feature list, calibration,
  run-out spreads, lifetimes parameters), plus the SHA-256 of the booster file;
- ``model.lgb``: the LightGBM booster as LightGBM's own text format (classifiers only).

Loading runs no code from the store but that file, so a data scientist gets any champion
with ``mlflow.pyfunc.load_model("models:/nextbest-churn@champion")`` and predicts on a
feature table from ``nextbest features``; the service and the gate load the same parts
natively (:func:`load_parts`). The input each kind predicts on:

================  ==========================================================================
churn             ``customers.parquet`` of a snapshot -> ``churn_probability``
replenishment     pair features with customer context and ``cutoff``
                  (:func:`training.replenishment.pair_frame_from`) -> ``repurchase_probability``
                  and the run-out dates ``runout_p10``, ``runout_p50``, ``runout_p90``
clv               ``customers.parquet`` -> expected purchases and spend over the horizon,
                  ``clv_{M}m`` and ``p_alive``
next_product      candidates with their features and ``cutoff``
                  (:func:`training.next_product.candidate_frame`) -> ``purchase_probability``
================  ==========================================================================
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import lightgbm as lgb
import mlflow
import pandas as pd

from cdp.errors import NextbestError
from training.churn import ChurnModel
from training.classifier import CalibratedClassifier
from training.clv import ClvModel
from training.replenishment import ReplenishmentModel, RunoutModel

#: A registered model of any kind.
Model = CalibratedClassifier | ReplenishmentModel | ClvModel

BOOSTER = "model.lgb"
PARTS = "model.json"
CODE = Path(__file__).with_name("pyfunc_model.py")


class CorruptModelError(NextbestError):
    """A stored model whose files do not match what was registered (checked before LightGBM
    parses them: it aborts the whole process on a malformed model file)."""


def classifier_of(model: CalibratedClassifier | ReplenishmentModel) -> CalibratedClassifier:
    """The calibrated classifier of a churn or next-product model (itself) or of a
    replenishment model."""
    return getattr(model, "classifier", model)


def parts_of(kind: str, model: Model, **extra: object) -> dict:
    """The JSON-able learned values of ``model`` of ``kind`` (no booster)."""
    if kind == "clv":
        return {"kind": kind, **model.to_dict(), **extra}
    classifier = classifier_of(model)
    parts = {
        "kind": kind,
        "label": classifier.label,
        "params": classifier.get_params(),
        "features": classifier.features_,
        "calibration": classifier.calibration_,
        **extra,
    }
    if kind == "replenishment":
        runout = model.runout
        learned = ("product_sigma_", "default_sigma_", "scale_")
        parts["runout"] = {**runout.get_params(), **{k: getattr(runout, k) for k in learned}}
    return parts


def model_from_parts(parts: dict, booster: lgb.Booster | None) -> Model:
    """The fitted model that :func:`parts_of` (and the booster) describe."""
    kind = parts["kind"]
    if kind == "clv":
        return ClvModel.from_dict(parts)
    cls = ChurnModel if kind == "churn" else CalibratedClassifier
    params = parts.get("params") or {"label": parts["label"]}  # stores before params were kept
    classifier = cls.from_parts(booster, parts["features"], parts["calibration"], params)
    if kind in ("churn", "next_product"):
        return classifier
    return ReplenishmentModel(classifier, RunoutModel.from_parts(parts["runout"]))


def predict_frame(parts: dict, model: Model, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's predictions for each row of ``frame`` (see the module's table), with the
    ``customer_id`` (and ``product_id``) of the input when it has them."""
    kind = parts["kind"]
    if kind == "clv":
        return model.predict(frame, horizon_days=parts["horizon_days"])
    keys = frame[[c for c in ("customer_id", "product_id") if c in frame]]
    if kind == "churn":
        return keys.assign(churn_probability=model.predict_proba(frame))
    if kind == "next_product":
        return keys.assign(purchase_probability=model.predict_proba(frame))
    return pd.concat([keys, model.predict(frame)], axis=1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def log_model(kind: str, model: Model, registered_name: str, **extra: object) -> str:
    """Log ``model`` as a pyfunc model in the active run, register it as a new version of
    ``registered_name``; return the version. ``extra`` goes into ``model.json``."""

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"parts": str(Path(tmp) / PARTS)}
        booster_digest = None
        if kind != "clv":
            path = Path(tmp) / BOOSTER
            classifier_of(model).booster_.save_model(str(path))
            artifacts["booster"], booster_digest = str(path), _sha256(path)
        parts = parts_of(kind, model, booster_sha256=booster_digest, **extra)
        Path(artifacts["parts"]).write_text(json.dumps(parts, indent=2, sort_keys=True))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CODE),
            artifacts=artifacts,
            pip_requirements=_requirements(),
            registered_model_name=registered_name,
        )
    return str(info.registered_model_version)


def _requirements() -> list[str]:
    from importlib.metadata import version

    names = ("lightgbm", "pandas", "numpy", "scipy", "scikit-learn", "polars", "mlflow")
    return [f"{name}=={version(name)}" for name in names]


def load_parts(folder: Path) -> tuple[object, dict]:
    """The model and its parts from a local model folder (an MLflow model's artifacts);
    :class:`CorruptModelError` if the booster is not the one registered."""
    parts_path = folder / "artifacts" / PARTS
    try:
        parts = json.loads(parts_path.read_text())
    except (OSError, ValueError) as error:
        raise CorruptModelError(f"{parts_path}: unreadable model parts: {error}") from None
    booster = None
    if parts["kind"] != "clv":
        path = folder / "artifacts" / BOOSTER
        if not path.is_file() or _sha256(path) != parts.get("booster_sha256"):
            raise CorruptModelError(f"{path}: the booster is not the one registered")
        booster = lgb.Booster(model_file=str(path))
    return model_from_parts(parts, booster), parts
