"""The champion gate applied in the registry: a new version is aliased ``challenger``, judged
against the champion on the same validation examples (:mod:`training.gate`), tagged and
described with the decision, and promoted (alias ``champion``) only if it won.

The decision and both scores are logged with the run (tags, metrics and ``gate.json``) and
on the version (tags ``gate.decision``, ``gate.reason``, the as-of and data digest, and a
description). A failure before the decision is logged deletes the new version: no version is
left without its decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import mlflow
import numpy as np
from mlflow import MlflowClient

from training.baseline import Choice
from training.gate import Decision, Gate
from training.registry import REGISTERED, load, promote_champions

GATE_METRICS = {
    "churn": ("roc_auc", True),
    "replenishment": ("roc_auc", True),
    "clv": ("mae", False),
    "next_product": ("roc_auc", True),
}


def gate(
    kind: str,
    version: str,
    run_id: str,
    y: np.ndarray,
    predict: Callable[[object], np.ndarray],
    challenger_model: object,
    about: dict,
    *,
    margin: float,
    confidence: float,
    promote: bool,
    choice: Choice | None = None,
) -> Decision:
    """Alias the new version ``challenger`` and decide whether it beats the champion on the
    same validation examples (``predict(model)`` against ``y``, :mod:`training.gate`); promote
    it at once if ``promote``, else leave that to :func:`training.registry.promote_champions`.
    A failure before the decision is logged deletes the new version: no version is left
    without its decision.
    ``about``: the version's tags (as-of, data digest), with the decision added. ``choice``:
    what this training registered (the model or a baseline) and why."""

    gate = Gate(*GATE_METRICS[kind], margin=margin, confidence=confidence)
    choice = choice or Choice("model", "")
    try:
        decision = _decide(kind, version, run_id, y, predict, challenger_model, gate)
        decision = replace(decision, scorer=choice.scorer, choice=choice.reason)
        _describe(decision, gate, about)
    except BaseException:
        MlflowClient().delete_model_version(REGISTERED[kind], version)
        raise
    if promote:
        promote_champions([decision])
    return decision


def _decide(kind, version, run_id, y, predict, challenger_model, gate: Gate) -> Decision:
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
    "next_product": "Probability that a customer buys a candidate product (or a pack of it)"
    " in the next {window_days} days. Input: candidates with features"
    " (training.next_product.candidate_frame).",
    "clv": "BG/NBD and Gamma-Gamma: expected purchases, spend and 12-month value per customer."
    " Input: customers.parquet of `nextbest features`.",
}


def _describe(decision: Decision, gate: Gate, about: dict) -> None:
    """Tag the new version with its as-of, data digest and gate decision, and describe it."""

    client, name = MlflowClient(), REGISTERED[decision.kind]
    tags = {
        **{k: str(v) for k, v in about.items() if v is not None},
        "gate.decision": "promoted" if decision.promoted else "kept champion",
        "gate.reason": decision.reason,
        "nextbest.scorer": decision.scorer,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.version, key, value)
    text = DESCRIPTIONS[decision.kind].format(
        horizon_days=about.get("nextbest.horizon_days") or "H",
        window_days=about.get("nextbest.window_days") or "W",
    )
    as_of = about.get("nextbest.as_of") or "an unrecorded as-of"
    what = (
        "" if decision.scorer == "model" else f" The {decision.scorer} baseline: {decision.choice}."
    )
    client.update_model_version(
        name,
        decision.version,
        description=f"{text}{what} Trained as of {as_of}; gate ({gate.metric}): {decision.reason}.",
    )
