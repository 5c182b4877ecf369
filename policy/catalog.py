"""The action catalog: ``policy/actions.yaml`` read and checked in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdp.errors import BadInputError
from policy.loader import read_yaml

LOCALES = ("en", "zh-TW", "zh-CN")
PURPOSES = ("service", "marketing")
KINDS = (
    "escalate_to_human",
    "order_status_help",
    "replenishment_reminder",
    "cross_sell",
    "winback_offer",
    "nothing_now",
)
DEFAULT = Path(__file__).with_name("actions.yaml")
#: What an action's ``due`` rule may say: each a number >= 0 (the win-back's: churn risk
#: and quiet; the reminder's: the next-product model's agreement).
DUE = {
    "winback_offer": ("churn_probability", "gap_multiple", "default_gap_days"),
    "replenishment_reminder": ("next_product_probability",),
}
#: What a ``due`` rule may also say (0 when it does not): the win-back's least quiet period,
#: in days, whatever the customer's own gap.
DUE_OPTIONAL = {"winback_offer": ("min_quiet_days",)}


@dataclass(frozen=True)
class Action:
    name: str
    purpose: str
    value: float | str  # a number, "product_margin" or "clv_12m"
    cost: float
    cooldown_days: float
    cap_per_30_days: int
    templates: dict[str, str]
    reasons: dict[str, str]
    #: texts for a date already past (a reminder that is overdue), when the action has them
    overdue: dict[str, dict[str, str]] | None = None
    #: when the action is due at all (see :data:`DUE`), if it says
    due: dict[str, float] | None = None

    def texts(self, overdue: bool = False) -> tuple[dict[str, str], dict[str, str]]:
        """The message templates and reasons: the overdue ones for a date already past."""
        if overdue and self.overdue:
            return self.overdue["templates"], self.overdue["reasons"]
        return self.templates, self.reasons


@dataclass(frozen=True)
class Catalog:
    actions: dict[str, Action]
    margin: float
    retention_uplift: float
    #: the Beta prior of acceptance rates: (mean, weight in exposures)
    feedback_prior: tuple[float, float] = (0.2, 20.0)

    def __getitem__(self, name: str) -> Action:
        return self.actions[name]


def load_catalog(path: str | Path = DEFAULT) -> Catalog:
    """Read and check a catalog; every problem is reported at once, naming the field."""
    path = Path(path)
    raw = read_yaml(path, "the action catalog")
    problems: list[str] = []
    actions = {}
    entries = raw.get("actions") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise BadInputError(f"{path}: expected a mapping 'actions'")
    for name in KINDS:
        if name not in entries:
            problems.append(f"actions.{name}: missing (every action kind needs an entry)")
    for name, spec in entries.items():
        where = f"actions.{name}"
        if name not in KINDS:
            problems.append(f"{where}: unknown action kind (known: {', '.join(KINDS)})")
            continue
        if spec.get("purpose") not in PURPOSES:
            problems.append(f"{where}.purpose: must be one of {PURPOSES}")
        value = spec.get("value")
        if not (isinstance(value, int | float) or value in ("product_margin", "clv_12m")):
            problems.append(f"{where}.value: a number, product_margin or clv_12m")
        for field in ("cost", "cooldown_days", "cap_per_30_days"):
            if not isinstance(spec.get(field), int | float) or spec[field] < 0:
                problems.append(f"{where}.{field}: must be a number >= 0")
        for field in ("templates", "reasons", "overdue.templates", "overdue.reasons"):
            head, _, tail = field.partition(".")
            if tail and "overdue" not in spec:
                continue
            texts = (spec.get(head) or {}).get(tail) if tail else spec.get(head)
            missing = [loc for loc in LOCALES if loc not in (texts or {})]
            if missing:
                problems.append(f"{where}.{field}: missing locales {missing}")
        due = spec.get("due")
        if due is not None and name not in DUE:
            problems.append(f"{where}.due: only {', '.join(DUE)} have a due rule")
        elif due is not None:
            keys = DUE[name]
            optional = DUE_OPTIONAL.get(name, ())
            wrong = [
                k for k in keys if not isinstance((due or {}).get(k), int | float) or due[k] < 0
            ]
            wrong += [
                k
                for k in (due or {})
                if k not in keys
                and (k not in optional or not isinstance(due[k], int | float) or due[k] < 0)
            ]
            if wrong:
                problems.append(f"{where}.due: {', '.join(keys)}, each a number >= 0 (not {wrong})")
        if not problems:
            actions[name] = Action(
                name=name,
                purpose=spec["purpose"],
                value=value,
                cost=float(spec["cost"]),
                cooldown_days=float(spec["cooldown_days"]),
                cap_per_30_days=int(spec["cap_per_30_days"]),
                templates=dict(spec["templates"]),
                reasons=dict(spec["reasons"]),
                overdue=spec.get("overdue"),
                due={k: float(v) for k, v in due.items()} if due else None,
            )
    prior = raw.get("feedback_prior", {"rate": 0.2, "strength": 20})
    rate = prior.get("rate") if isinstance(prior, dict) else None
    strength = prior.get("strength") if isinstance(prior, dict) else None
    if not (isinstance(rate, int | float) and 0 < rate < 1):
        problems.append("feedback_prior.rate: a number between 0 and 1 (exclusive)")
    if not (isinstance(strength, int | float) and strength > 0):
        problems.append("feedback_prior.strength: a number > 0 (exposures)")
    if problems:
        raise BadInputError(f"{path}: " + "; ".join(problems))
    return Catalog(
        actions,
        float(raw.get("margin", 0.3)),
        float(raw.get("retention_uplift", 0.1)),
        (float(rate), float(strength)),
    )
