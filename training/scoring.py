"""Scoring with the champions: load them from the registry and score feature tables.

Serving loads and scores through this module alone: it never imports the training pipeline.
:func:`score` is ``nextbest score``: every customer (and pair) scored and written, with the
purpose limitation applied (no marketing score without marketing consent in force).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pandas as pd
from mlflow.exceptions import MlflowException

from cdp.errors import BadInputError
from cdp.io import atomic_folder, write_table
from cdp.time import AsOf, Moment, as_utc
from features.build import build_features
from features.config import FeatureConfig
from features.inputs import Tables
from features.io import read_snapshot
from training.next_product import candidate_frame
from training.replenishment import pair_frame_from


def load_champions() -> tuple[dict, dict[str, str]]:
    """Load the champion of every kind from the configured registry.

    Returns
    -------
    tuple of (dict, dict)
        The models by kind, and their versions by kind. A missing replenishment or
        next-product champion is left out (data without consumables or candidates has none).

    Raises
    ------
    BadInputError
        When there is no churn or CLV champion.
    CorruptModelError
        When a champion's files do not match what was registered.
    """

    from training import registry

    champions, versions = {}, {}
    for kind in registry.REGISTERED:
        try:
            champions[kind], versions[kind] = registry.load(kind, "champion")
        except MlflowException as error:
            if kind in registry.OPTIONAL:
                continue
            raise BadInputError(
                f"no champion for {registry.REGISTERED[kind]}: run `nextbest train` first"
                f" ({type(error).__name__})"
            ) from error
    return champions, versions


def trained_with(versions: dict[str, str]) -> FeatureConfig | None:
    """The feature settings the champions (``versions``: kind -> version) were trained with,
    from each version's :data:`training.registry.FEATURES_TAG`; None when none carries them
    (versions trained before the settings travelled with the models).

    Raises
    ------
    BadInputError
        When two champions were trained with different settings: nothing can score them
        together.
    """
    from training import registry

    found = {}
    for kind, version in versions.items():
        settings = registry.trained_settings(kind, version)
        if settings is not None:
            found[f"{kind} v{version}"] = FeatureConfig.from_dict(settings)
    if not found:
        return None
    (first, config), *rest = found.items()
    for other, theirs in rest:
        if theirs != config:
            mine, their = config.differences(theirs)
            raise BadInputError(
                f"the champions were trained with different feature settings ({first}: {mine};"
                f" {other}: {their}): train them together with `nextbest train`"
            )
    return config


def settings_for(versions: dict[str, str], config: FeatureConfig | None) -> FeatureConfig:
    """The feature settings to build with for the champions ``versions``: theirs (``config``,
    when given, must agree), else ``config``, else the defaults."""
    trained = trained_with(versions)
    if trained is None:
        return config or FeatureConfig()
    if config is not None:
        check_settings(config, trained, "the features asked for")
    return trained


def check_settings(config: FeatureConfig, trained: FeatureConfig | None, what: str) -> None:
    """Refuse, in one line, features built with other settings than the champions' (None:
    champions that do not say)."""
    if trained is not None and config != trained:
        built, theirs = config.differences(trained)
        raise BadInputError(
            f"{what}: built with {built}; the champions were trained with {theirs}: build"
            " with theirs (`nextbest features` takes them from the registry)"
        )


def score_frames(
    customers: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    as_of: Moment,
    champions: dict,
    versions: dict[str, str],
    config: FeatureConfig,
) -> dict[str, pd.DataFrame]:
    """Score feature tables with the champions.

    Parameters
    ----------
    customers, pairs : pandas.DataFrame
        The feature tables at ``as_of`` (a build or a snapshot).
    as_of : Moment
        Their moment (settled).
    champions : dict
        The models by kind (:func:`load_champions`).
    versions : dict of str to str
        Their versions, named in errors.
    config : FeatureConfig
        The settings the features were built with.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``churn`` and ``clv`` for every customer who has bought; ``replenishment`` for
        every pair when there is a replenishment champion.

    Raises
    ------
    BadInputError
        When a model expects features a build with ``config`` does not make.
    """
    frames = {}
    buyers = customers[customers["purchase_days"] > 0]
    churn = champions["churn"]
    _expect(churn.features_, buyers, "churn", versions["churn"], config)
    frames["churn"] = pd.DataFrame(
        {"customer_id": buyers["customer_id"], "churn_probability": churn.predict_proba(buyers)}
    )
    h, clv = config.horizon_days, champions["clv"]
    frames["clv"] = clv.predict(buyers, horizon_days=h)[
        [
            "customer_id",
            "p_alive",
            f"expected_purchases_{h}d",
            "expected_order_value",
            f"expected_spend_{h}d",
            f"clv_{clv.clv_months}m",
        ]
    ]
    if "replenishment" in champions:
        model = champions["replenishment"]
        frame = pair_frame_from(customers, pairs, as_of)
        _expect(
            model.classifier.features_, frame, "replenishment", versions["replenishment"], config
        )
        predicted = model.predict(frame)
        frames["replenishment"] = pd.DataFrame(
            {
                "customer_id": frame["customer_id"],
                "product_id": frame["product_id"],
                "repurchase_probability": predicted["repurchase_probability"],
                "expected_next_purchase_at": predicted["runout_p50"],
                "next_purchase_p10_at": predicted["runout_p10"],
                "next_purchase_p90_at": predicted["runout_p90"],
            }
        )
    return {name: frame.reset_index(drop=True) for name, frame in frames.items()}


def score_candidates(
    tables: Tables,
    customers: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    as_of: Moment,
    champions: dict,
    versions: dict[str, str],
    config: FeatureConfig,
) -> pd.DataFrame | None:
    """The next-product candidates at ``as_of`` (:func:`training.next_product.candidate_frame`)
    with the champion's ``purchase_probability``; ``None`` without a next-product champion.
    ``customers`` and ``pairs``: the feature tables at ``as_of``."""
    if "next_product" not in champions:
        return None
    model = champions["next_product"]
    frame = candidate_frame(tables, customers, pairs, as_of)
    _expect(model.features_, frame, "next_product", versions["next_product"], config)
    return frame.assign(purchase_probability=model.predict_proba(frame))


def score(
    tables: Tables | None = None,
    *,
    as_of: AsOf | None = None,
    config: FeatureConfig | None,
    out: str | os.PathLike,
    snapshot: str | os.PathLike | None = None,
    consents: pd.DataFrame | None = None,
    overwrite: bool = False,
) -> dict:
    """Score every customer (and pair) with the champion models and write ``out``.

    Purpose limitation: the three models serve marketing (:data:`training.registry.PURPOSES`),
    so customers without marketing consent in force at ``as_of`` get no score;
    ``scores.json`` counts them under ``withheld``.

    Parameters
    ----------
    tables : Tables, optional
        The contract tables to build features from (with ``as_of``).
    as_of : AsOf, optional
        The moment to build features at; settled to UTC here.
    config : FeatureConfig or None
        Feature settings of a build: None for the champions' own (a snapshot brings its
        own, and must have been built with the champions').
    out : str or os.PathLike
        The folder to write: one Parquet file per model and ``scores.json``.
    snapshot : str or os.PathLike, optional
        A feature snapshot (``nextbest features``) to score instead of building.
    consents : pandas.DataFrame, optional
        The consent records; ``tables.consents`` when not given.
    overwrite : bool, default False
        Replace a non-empty ``out`` (atomically).

    Returns
    -------
    dict
        What ``scores.json`` holds: as-of, model versions, rows written and withheld.
    """
    from cdp.privacy import consent_in_force
    from training.registry import PURPOSES, REGISTERED

    champions, versions = load_champions()
    if snapshot is not None:
        customers, pairs, manifest = read_snapshot(snapshot)
        as_of = as_utc(manifest["as_of"])
        config = FeatureConfig.from_dict(manifest["config"])
        check_settings(config, trained_with(versions), f"the snapshot {snapshot}")
    else:
        as_of = as_utc(as_of)
        config = settings_for(versions, config)
        built = build_features(tables, as_of=as_of, config=config)
        customers, pairs = built.customers, built.pairs
    consents = tables.consents if consents is None and tables is not None else consents
    if consents is None:
        raise BadInputError("score: the consents table is needed (marketing scores need consent)")
    allowed = consent_in_force(consents, "marketing", pd.Timestamp(as_of))
    frames = score_frames(
        customers, pairs, as_of=as_of, champions=champions, versions=versions, config=config
    )
    withheld = {}
    for name, frame in frames.items():
        if PURPOSES[name] == "marketing":
            keep = frame["customer_id"].isin(allowed).to_numpy()
            withheld[name] = int((~keep).sum())
            frames[name] = frame[keep].reset_index(drop=True)
    meta = {
        "as_of": as_of.isoformat(),
        "models": {REGISTERED[k]: v for k, v in versions.items()},
        "rows": {name: len(frame) for name, frame in frames.items()},
        "withheld": {
            "reason": "no marketing consent in force at as_of (the models serve marketing)",
            "rows": withheld,
        },
        "config": asdict(config),
    }
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for name, frame in frames.items():
            write_table(frame, tmp / f"{name}.parquet")
        (tmp / "scores.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _expect(features: list[str], frame: pd.DataFrame, kind: str, version: str, config) -> None:
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise BadInputError(
            f"{kind} model version {version} expects features {missing[:3]} that a build with"
            f" horizon {config.horizon_days} days and window {config.window_days} days does not"
            " make: score with the settings it was trained with"
        )
