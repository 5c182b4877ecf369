"""Learning from feedback (Beta-shrunk rates, exploration with propensities) and judging a
new policy offline (IPS, SNIPS) on simulated logged feedback with a known truth."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import yaml

from policy.catalog import DEFAULT, load_catalog
from policy.learning import NO_FEEDBACK, Prior, explore, learn, propensities
from policy.profile import Context, CrossSell, Profile
from policy.ranking import rank

NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)
CATALOG = load_catalog()
NAMES = {"en": "Lamp", "zh-TW": "檯燈", "zh-CN": "台灯"}


def _exposures(action: str, shown: int, accepted: int, segment=None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": [f"ps{i}" for i in range(shown)],
            "action": action,
            "accepted": np.arange(shown) < accepted,
            "converted": False,
            "segment": segment,
        }
    )


def test_rates_are_shrunk_towards_the_prior_by_how_much_feedback_there_is():
    prior = Prior(rate=0.2, strength=20)
    assert learn(_exposures("cross_sell", 0, 0), prior) is NO_FEEDBACK
    few = learn(_exposures("cross_sell", 5, 5), prior).of(None)["cross_sell"]
    many = learn(_exposures("cross_sell", 5000, 2000), prior).of(None)["cross_sell"]
    assert 1 < few < (5 / 5) / 0.2 / 2  # five acceptances of five say little: not 5x
    assert many == pytest.approx(0.4 / 0.2, rel=0.01)  # five thousand decide it
    # a segment's rate is shrunk towards its action's rate, not towards the prior
    both = pd.concat(
        [_exposures("cross_sell", 5000, 2000, "Champions"), _exposures("cross_sell", 4, 0, "New")]
    )
    factors = learn(both, prior)
    assert factors.of("New")["cross_sell"] > 1.5 > 0
    assert factors.of("Champions")["cross_sell"] == pytest.approx(2.0, rel=0.02)


def _profile() -> Profile:
    return Profile(
        "C1",
        marketing_consent=True,
        cross_sell=[CrossSell("P-LAMP", NAMES, 39.0, 0.3, ("LIKELY_NEXT_PURCHASE",))],
    )


def test_feedback_multiplies_the_probability_in_the_expected_value():
    plain = rank(_profile(), Context(), CATALOG, now=NOW)
    cross = next(s for s in plain.suggestions if s.action == "cross_sell")
    liked = rank(_profile(), Context(), CATALOG, now=NOW, factors={"cross_sell": 2.0})
    doubled = next(s for s in liked.suggestions if s.action == "cross_sell")
    cost = CATALOG["cross_sell"].cost
    assert doubled.expected_value == pytest.approx(2 * (cross.expected_value + cost) - cost)
    assert doubled.probability == cross.probability  # the model's own, as it said
    ignored = rank(_profile(), Context(), CATALOG, now=NOW, factors={"cross_sell": 0.0})
    assert "cross_sell" not in [s.action for s in ignored.suggestions]


def test_exploration_logs_the_real_probability_of_each_first_action():
    profile = _profile()
    profile.cross_sell.append(CrossSell("P-MUG", NAMES, 12.0, 0.9, ("LIKELY_NEXT_PURCHASE",)))
    ranking = rank(profile, Context(message="where is my order?"), CATALOG, now=NOW)
    assert len(ranking.eligible) >= 2
    assert [p for *_, p in propensities(ranking)] == [1.0] + [0.0] * (len(ranking.eligible) - 1)
    same, logged = explore(ranking, 0.0, np.random.default_rng(0))
    assert same is ranking and logged[0][2] == 1.0
    rng, epsilon, n = np.random.default_rng(1), 0.3, len(ranking.eligible)
    firsts = [explore(ranking, epsilon, rng)[0].suggestions[0].action for _ in range(4000)]
    _, logged = explore(ranking, epsilon, rng)
    chances = [p for *_, p in logged]
    assert sum(chances) == pytest.approx(1.0)
    assert chances[0] == pytest.approx(1 - epsilon + epsilon / n)
    share = np.mean([a == ranking.eligible[0].action for a in firsts])
    assert share == pytest.approx(chances[0], abs=0.03)


def _simulate(n: int, epsilon: float, seed: int = 7) -> tuple[pd.DataFrame, callable]:
    """Logged decisions of an epsilon-greedy policy over three actions per answer, with
    rewards drawn from a known conversion probability (half the action's probability)."""
    rng = np.random.default_rng(seed)
    actions = np.array(["replenishment_reminder", "cross_sell", "winback_offer"])
    probability = rng.uniform(0.05, 0.9, (n, 3))
    value = rng.uniform(3, 40, (n, 3))
    cost = np.array([CATALOG[a].cost for a in actions])
    greedy = np.argmax(probability * value - cost, axis=1)
    explored = rng.random(n) < epsilon
    served = np.where(explored, rng.integers(0, 3, n), greedy)
    propensity = (1 - epsilon) * (np.arange(3)[None, :] == greedy[:, None]) + epsilon / 3
    truth = 0.5 * probability  # the chance each action converts
    reward = rng.random(n) < truth[np.arange(n), served]
    frame = pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(n)], 3),
            "action": np.tile(actions, n),
            "product_id": None,
            "probability": probability.ravel(),
            "value": value.ravel(),
            "factor": 1.0,
            "propensity": propensity.ravel(),
            "first": (np.arange(3)[None, :] == served[:, None]).ravel(),
            "reward": np.where(
                np.arange(3)[None, :] == served[:, None], reward[:, None], 0
            ).ravel(),
        }
    )

    def true_value(target_cost: np.ndarray) -> float:
        target = np.argmax(probability * value - target_cost, axis=1)
        return float(truth[np.arange(n), target].mean())

    return frame, true_value


def test_evaluate_policy_recovers_a_known_conversion_rate(tmp_path):
    """A target that prices cross-sells and win-backs out (cost 1,000: reminders only)
    judged on an epsilon-greedy log: the known rate falls in the IPS and SNIPS intervals,
    not in the served policy's own."""
    decisions, true_value = _simulate(30_000, epsilon=0.3)
    path = tmp_path / "decisions.parquet"
    decisions.to_parquet(path)
    raw = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    raw["actions"]["cross_sell"]["cost"] = raw["actions"]["winback_offer"]["cost"] = 1000
    target = tmp_path / "target.yaml"
    target.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    costs = np.array([CATALOG["replenishment_reminder"].cost, 1000.0, 1000.0])
    expected = true_value(costs)
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        ["nextbest", "evaluate-policy", "--feedback", str(path), "--catalog", str(target),
         "--out", str(report_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "SNIPS" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["answers"] == 30_000 and 0 < report["matched"] < 30_000
    for name in ("ips", "snips"):
        assert report[name]["low"] <= expected <= report[name]["high"], (name, report, expected)
    logged = report["logged"]
    assert not logged["low"] <= expected <= logged["high"]  # the naive rate is the served one's
    assert report["snips"]["high"] - report["snips"]["low"] < 0.03


def test_evaluate_policy_refuses_bad_logs_naming_the_column(tmp_path):
    decisions, _ = _simulate(100, epsilon=0.3)
    path = tmp_path / "bad.parquet"
    decisions.drop(columns=["propensity"]).to_parquet(path)
    done = subprocess.run(
        ["nextbest", "evaluate-policy", "--feedback", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "propensity" in done.stderr
    decisions.assign(propensity=decisions["propensity"] * 4).to_parquet(path)
    done = subprocess.run(
        ["nextbest", "evaluate-policy", "--feedback", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "outside [0, 1]" in done.stderr
