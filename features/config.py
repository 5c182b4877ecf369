"""Settings of a feature build, validated in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class FeatureConfig:
    """What the features look at; every duration is in days.

    ``horizon_days`` is the churn horizon H (BG/NBD expected purchases are over it);
    ``window_days`` the repurchase window W; ``next_product_days`` the window of the
    next-product model (a purchase of the product within it); ``engagement_windows`` the
    look-back windows of the engagement counts; an event's sentiment below
    ``negative_sentiment`` counts as negative. ``penalizer`` is the L2 penalty of the
    lifetimes fits (raised tenfold, up to three times, when a fit does not converge). CLV
    is over ``clv_months`` months of 30 days, discounted by ``monthly_discount_rate``.
    """

    horizon_days: int = 90
    window_days: int = 14
    next_product_days: int = 30
    engagement_windows: tuple[int, ...] = (7, 30, 90)
    negative_sentiment: float = -0.3
    spend_trend_days: int = 90
    recent_gaps: int = 3
    penalizer: float = 0.001
    clv_months: int = 12
    monthly_discount_rate: float = 0.01

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "horizon_days",
            "window_days",
            "next_product_days",
            "spend_trend_days",
            "recent_gaps",
            "clv_months",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.engagement_windows or min(self.engagement_windows) < 1:
            problems.append(f"engagement_windows must be positive, got {self.engagement_windows}")
        if not -1 <= self.negative_sentiment <= 1:
            problems.append(f"negative_sentiment must be in [-1, 1], got {self.negative_sentiment}")
        if self.penalizer < 0 or self.monthly_discount_rate < 0:
            problems.append("penalizer and monthly_discount_rate must be >= 0")
        if problems:
            raise ValueError("FeatureConfig: " + "; ".join(problems))

    @property
    def longest_window(self) -> int:
        """The longest engagement window, in days."""
        return max(self.engagement_windows)

    @classmethod
    def from_dict(cls, values: dict) -> FeatureConfig:
        """The settings as a snapshot's manifest or a model version stores them (JSON: lists
        for tuples); keys a later version added take their defaults."""
        known = {f.name for f in fields(cls)}
        settings = {k: v for k, v in values.items() if k in known}
        if "engagement_windows" in settings:
            settings["engagement_windows"] = tuple(settings["engagement_windows"])
        return cls(**settings)

    def to_dict(self) -> dict:
        """The settings as JSON-able values (the manifest's ``config``)."""
        return asdict(self)

    def differences(self, other: FeatureConfig) -> tuple[str, str]:
        """The settings that differ, as ``name=value`` lists for this and ``other``."""
        names = [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]
        return tuple(", ".join(f"{n}={getattr(c, n)!r}" for n in names) for c in (self, other))  # type: ignore[return-value]
