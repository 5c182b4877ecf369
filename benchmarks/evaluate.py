"""Honest evaluations the README quotes: the models against their baselines on a later period.

    python -m benchmarks.evaluate cdnow     # make eval-cdnow: the real-data report
    python -m benchmarks.evaluate world     # make eval-world: a generated world (20k customers)

CDNOW: features at the validation cutoff 1997-12-31, churn horizon 90 days, labelled on
(1997-12-31, 1998-03-31]; the models are trained only on cutoffs whose windows end by
1997-12-31 (``training_cutoffs("1998-03-31", horizon_days=90)``). CDNOW has no consumables,
so only churn and CLV are evaluated there. No MLflow: this prints, it does not register.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from features.config import FeatureConfig
from training.churn import train_churn
from training.clv import train_clv
from training.dataset import churn_dataset, training_cutoffs
from training.replenishment import replenishment_dataset, train_replenishment

CHURN_COLUMNS = ["roc_auc", "pr_auc", "brier", "log_loss", "top_decile_capture"]


def _print(title: str, frame: pd.DataFrame) -> None:
    print(f"\n{title}")
    print(frame.to_string(float_format=lambda v: f"{v:.3f}"))


def evaluate(folder: Path, as_of: str, *, replenishment: bool) -> None:
    config = FeatureConfig()
    started = time.perf_counter()
    cutoffs = training_cutoffs(as_of, horizon_days=config.horizon_days)
    dataset = churn_dataset(folder, config, cutoffs)
    train_dates = ", ".join(c.date().isoformat() for c in cutoffs.train)
    print(f"churn: training cutoffs {train_dates}; validation cutoff {cutoffs.valid.date()}")
    print(f"examples: {len(dataset['train']):,} training, {len(dataset['valid']):,} validation")
    churn = train_churn(dataset, horizon_days=config.horizon_days)
    _print("tree size chosen on the training cutoffs (not on validation):", churn.selection)
    _print("churn in the next 90 days, validation period:", churn.metrics[CHURN_COLUMNS])
    clv = train_clv(folder, dataset["valid"], config=config)
    _print("spend in the next 90 days (CLV), validation period:", clv.metrics)
    if replenishment:
        w = config.window_days
        pairs = replenishment_dataset(
            folder, config, training_cutoffs(as_of, horizon_days=w, n_train=4, step_days=w)
        )
        result = train_replenishment(pairs, window_days=w)
        _print(f"repurchase in the next {w} days, validation period:", result.metrics.T)
    print(f"\n{time.perf_counter() - started:.1f} s")


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore", module="lifetimes")
    which = argv[0] if argv else "cdnow"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / which
        if which == "cdnow":
            from cdp.cdnow import cdnow_tables
            from cdp.io import write_tables

            write_tables(cdnow_tables(), folder)
            evaluate(folder, "1998-03-31", replenishment=False)
        elif which == "world":
            from cdp.io import write_tables
            from cdp.world.config import WorldConfig
            from cdp.world.generate import generate_world

            world = generate_world(WorldConfig(customers=20_000, seed=4, as_of="2025-06-30"))
            write_tables(world.tables, folder)
            evaluate(folder, "2025-06-30", replenishment=True)
        else:
            print(f"usage: python -m benchmarks.evaluate [cdnow|world], not {which!r}")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
