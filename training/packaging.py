"""How a nextbest model is stored in MLflow: a pyfunc model "from code", no pickles.

Every registered version (churn, replenishment, CLV, next product) is an MLflow
``python_function`` model whose loader is the file :mod:`training.pyfunc_model`, stored
beside two artifacts:

- ``model.json``: the model's kind and its learned values (feature list, calibration,
  run-out spreads, lifetimes parameters), plus the SHA-256 of the booster file;
- ``model.lgb``: the LightGBM booster as LightGBM's own text format (classifiers only).

A baseline registered instead of a classifier (:mod:`training.baseline`: the model did not
beat it) has ``"form": "logistic"`` in ``model.json`` and no booster; it loads, predicts and
serves through the same calls.

Loading runs no code from the store but that file and the code shipped beside it, so a
data scientist gets any champion with
``mlflow.pyfunc.load_model("models:/nextbest-churn@champion")`` and predicts on a feature
table from ``nextbest features``; the service and the gate load the same parts natively
(:func:`load_parts`).

**Models travel.** Each version carries what it needs to load in a fresh environment
built from its own ``requirements.txt``: the packages the loader imports (``cdp``,
``features``, ``training``) as ``code_paths``, pinned to the code that trained it, and
the third-party requirements pinned to the versions it was trained with. Shipping the code
was chosen over naming the nextbest wheel as a requirement: nextbest is not on a package
index a serving platform can reach, and a model must keep loading after the code moves on.
Each has a signature and an input example (a few validation rows), so ``spark_udf`` and
``mlflow models predict`` get named columns.

The input each kind predicts on:

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

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import lightgbm as lgb
import mlflow
import pandas as pd

from cdp.errors import NextbestError
from training.baseline import FORM, LogisticBaseline
from training.churn import ChurnModel
from training.classifier import CalibratedClassifier
from training.clv import ClvModel
from training.replenishment import ReplenishmentModel, RunoutModel

#: A registered model of any kind.
Model = CalibratedClassifier | LogisticBaseline | ReplenishmentModel | ClvModel

BOOSTER = "model.lgb"
PARTS = "model.json"
CODE = Path(__file__).with_name("pyfunc_model.py")
ROOT = CODE.parents[1]
#: The packages the loader imports, shipped with every model (``code_paths``).
CODE_PACKAGES = ("cdp", "features", "training")
EXAMPLE_ROWS = 5


class CorruptModelError(NextbestError):
    """A stored model whose files do not match what was registered (checked before LightGBM
    parses them: it aborts the whole process on a malformed model file)."""


def classifier_of(model: CalibratedClassifier | ReplenishmentModel) -> CalibratedClassifier:
    """The calibrated classifier (or baseline) of a churn or next-product model (itself) or
    of a replenishment model."""
    return getattr(model, "classifier", model)


def _boosted(kind: str, model: Model) -> bool:
    """Whether ``model`` of ``kind`` holds a LightGBM booster (not CLV, not a baseline)."""
    return kind != "clv" and not isinstance(classifier_of(model), LogisticBaseline)


def parts_of(kind: str, model: Model, **extra: object) -> dict:
    """The JSON-able learned values of ``model`` of ``kind`` (no booster)."""
    if kind == "clv":
        return {"kind": kind, **model.to_dict(), **extra}
    classifier = classifier_of(model)
    if isinstance(classifier, LogisticBaseline):
        parts = {"kind": kind, **classifier.to_parts(), **extra}
    else:
        parts = {
            "kind": kind,
            "label": classifier.label,
            "params": classifier.get_params(),
            "features": classifier.features_,
            "calibration": classifier.calibration_,
            **extra,
        }
        if getattr(classifier, "prior_", None) is not None:
            parts["prior"] = classifier.prior_.to_parts()
    if kind == "replenishment":
        runout = model.runout
        learned = ("product_sigma_", "default_sigma_", "scale_")
        parts["runout"] = {**runout.get_params(), **{k: getattr(runout, k) for k in learned}}
    return parts


def fingerprint(kind: str, model: Model) -> str:
    """A digest of everything ``model`` of ``kind`` has learned (its parts and its booster):
    equal for the same model however it was loaded, different for any other model."""
    digest = hashlib.sha256(json.dumps(parts_of(kind, model), sort_keys=True, default=str).encode())
    if _boosted(kind, model):
        digest.update(classifier_of(model).booster_.model_to_string().encode())
    return digest.hexdigest()


def model_from_parts(parts: dict, booster: lgb.Booster | None) -> Model:
    """The fitted model that :func:`parts_of` (and the booster) describe."""
    kind = parts["kind"]
    if kind == "clv":
        return ClvModel.from_dict(parts)
    if parts.get("form") == FORM:
        classifier = LogisticBaseline.from_parts(parts)
    else:
        cls = ChurnModel if kind == "churn" else CalibratedClassifier
        params = parts.get("params") or {"label": parts["label"]}  # before params were kept
        prior = parts.get("prior")
        classifier = cls.from_parts(booster, parts["features"], parts["calibration"], params, prior)
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


def inputs(parts: dict, model: Model) -> list[str]:
    """The columns a model of ``parts["kind"]`` reads (its signature's inputs): the keys,
    the classifier's features, and what the run-out dates or lifetimes need."""
    from training.clv import SUMMARY

    kind = parts["kind"]
    if kind == "clv":
        return ["customer_id", *SUMMARY]
    keys = ["customer_id"] if kind == "churn" else ["customer_id", "product_id"]
    extra = []
    if kind == "replenishment":
        extra = ["cutoff", "expected_cycle_days", "last_purchase_at", "purchase_days"]
    features = classifier_of(model).features_
    return list(dict.fromkeys([*keys, *features, *extra]))


def utc_times(frame: pd.DataFrame, times: list[str] = ()) -> pd.DataFrame:
    """``frame`` with its time columns as UTC-aware times: naive ones read as UTC (the
    contract's rule; Spark hands times over naive) and the columns ``times`` names parsed
    when they came as text (ISO 8601, as JSON and CSV carry them)."""
    fixed = {}
    for c in frame.columns:
        column = frame[c]
        if c in times and not pd.api.types.is_datetime64_any_dtype(column):
            fixed[c] = pd.to_datetime(column, utc=True, format="ISO8601")
        elif pd.api.types.is_datetime64_dtype(column) and column.dt.tz is None:
            fixed[c] = column.dt.tz_localize("UTC")
    return frame.assign(**fixed) if fixed else frame


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def log_model(
    kind: str,
    model: Model,
    registered_name: str,
    example: pd.DataFrame | None = None,
    description: str | None = None,
    **extra: object,
) -> str:
    """Log ``model`` as a pyfunc model in the active run, register it as a new version of
    ``registered_name`` (described by ``description``); return the version. ``example``: a
    few rows of what it predicts on, for its signature and input example. ``extra`` goes
    into ``model.json``."""
    from mlflow.models import ModelSignature, infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"parts": str(Path(tmp) / PARTS)}
        booster_digest = None
        if _boosted(kind, model):
            path = Path(tmp) / BOOSTER
            classifier_of(model).booster_.save_model(str(path))
            artifacts["booster"], booster_digest = str(path), _sha256(path)
        parts = parts_of(kind, model, booster_sha256=booster_digest, **extra)
        signature = None
        if example is not None:
            aware = example[inputs(parts, model)].head(EXAMPLE_ROWS).reset_index(drop=True)
            # no customer's id in an artifact: the example's rows are named, not identified
            aware["customer_id"] = [f"example-{i + 1}" for i in range(len(aware))]
            times = [c for c in aware if pd.api.types.is_datetime64_any_dtype(aware[c])]
            parts["time_inputs"] = times  # parsed when they come as text (JSON, a CSV)
            example = _plain_times(aware)
            output = _plain_times(predict_frame(parts, model, aware))
            with warnings.catch_warnings():  # its hint on integer outputs: not enforced
                warnings.simplefilter("ignore", UserWarning)
                outputs = infer_signature(example, output).outputs
            signature = ModelSignature(_schema(example), outputs)
        Path(artifacts["parts"]).write_text(json.dumps(parts, indent=2, sort_keys=True))
        # MLflow prints its registry chatter ("Successfully registered model", "Created
        # version") straight to stderr, between the command's stage lines: kept out
        with _without_uv_files(), contextlib.redirect_stderr(io.StringIO()):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(CODE),
                artifacts=artifacts,
                code_paths=[str(ROOT / package) for package in CODE_PACKAGES],
                pip_requirements=_requirements(),
                signature=signature,
                input_example=example,
                registered_model_name=registered_name,
            )
    if description:
        mlflow.MlflowClient().update_registered_model(registered_name, description)
    return str(info.registered_model_version)


@contextlib.contextmanager
def _without_uv_files():
    """Keep MLflow from copying this project's ``uv.lock`` and ``pyproject.toml`` into the
    model: restored with ``uv sync``, they would build nextbest itself, which a serving
    environment cannot; the model's own ``requirements.txt`` (and its shipped code) is
    what it needs."""
    before = os.environ.get("MLFLOW_LOG_UV_FILES")
    os.environ["MLFLOW_LOG_UV_FILES"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_LOG_UV_FILES", None)
        else:
            os.environ["MLFLOW_LOG_UV_FILES"] = before


def _requirements() -> list[str]:
    """The third-party packages the shipped code imports, at the versions trained with
    (``setuptools`` below 81: lifetimes imports ``pkg_resources``)."""
    from importlib.metadata import version

    names = (
        "lightgbm", "pandas", "numpy", "scipy", "scikit-learn", "polars", "pyarrow", "mlflow",
        "lifetimes", "pyyaml",
    )  # fmt: skip
    return [f"{name}=={version(name)}" for name in names] + ["setuptools<81"]


def _schema(example: pd.DataFrame):
    """The input schema of ``example``'s columns, each by name and optional: text columns
    as strings, the others as ``Any``. MLflow enforces a declared number or time type
    strictly, and a snapshot's counts are nullable integers (a customer without events) and
    its times UTC-aware, which it would refuse; the model reads its own columns."""
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    def kind(dtype):
        return "string" if pd.api.types.is_string_dtype(dtype) else AnyType()

    return Schema([ColSpec(kind(t), str(c), required=False) for c, t in example.dtypes.items()])


def _plain_times(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with time columns as naive UTC nanoseconds (what a signature's
    ``datetime`` and Spark hand back)."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def load_parts(folder: Path) -> tuple[object, dict]:
    """The model and its parts from a local model folder (an MLflow model's artifacts);
    :class:`CorruptModelError` if the booster is not the one registered."""
    parts_path = folder / "artifacts" / PARTS
    try:
        parts = json.loads(parts_path.read_text())
    except (OSError, ValueError) as error:
        raise CorruptModelError(f"{parts_path}: unreadable model parts: {error}") from None
    booster = None
    if parts["kind"] != "clv" and parts.get("form") != FORM:
        path = folder / "artifacts" / BOOSTER
        if not path.is_file() or _sha256(path) != parts.get("booster_sha256"):
            raise CorruptModelError(f"{path}: the booster is not the one registered")
        booster = lgb.Booster(model_file=str(path))
    return model_from_parts(parts, booster), parts
