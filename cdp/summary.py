"""A short, human summary of a contract dataset as of a moment (``nextbest demo``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cdp.contract import STITCHABLE_ID_TYPES, ContractTables
from cdp.time import AsOf, as_utc


def marketing_consent_share(tables: ContractTables, as_of: pd.Timestamp) -> float:
    """Share of customers existing at ``as_of`` whose latest marketing consent is a grant."""
    customers = tables.customers[tables.customers["created_at"] <= as_of]
    records = tables.consents[
        (tables.consents["purpose"] == "marketing") & (tables.consents["recorded_at"] <= as_of)
    ]
    latest = records.sort_values("recorded_at").groupby("customer_id")["granted"].last()
    granted = latest.reindex(customers["customer_id"]).fillna(False).astype(bool)
    return float(granted.mean()) if len(granted) else 0.0


def world_summary(
    tables: ContractTables, as_of: AsOf, truth_folder: Path | None = None
) -> dict[str, str]:
    """Counts a newcomer checks first; ``truth_folder`` adds what happened after ``as_of``."""
    as_of = as_utc(as_of)
    orders, events = tables.orders, tables.events
    past = orders[orders["ordered_at"] <= as_of]
    existing = int((tables.customers["created_at"] <= as_of).sum())
    buyers = past.loc[past["quantity"] > 0, "customer_id"].nunique()
    anonymous = events[events["customer_id"].isna()]
    stitchable = tables.identities[tables.identities["id_type"].isin(STITCHABLE_ID_TYPES)]
    stitched = anonymous["anonymous_id"].isin(stitchable["id_value"]).sum()
    consumables = tables.products.loc[tables.products["consumable"], "product_id"]
    repeat = (
        past[past["product_id"].isin(consumables) & (past["quantity"] > 0)]
        .assign(day=lambda f: f["ordered_at"].dt.floor("D"))
        .groupby(["customer_id", "product_id"])["day"]
        .nunique()
    )
    locales = tables.customers["locale"].value_counts(normalize=True)
    summary = {
        "customers at as-of": f"{existing:,} ({buyers:,} have bought)",
        "order lines before / after as-of": f"{len(past):,} / {len(orders) - len(past):,}",
        "events (anonymous; stitched via cookie/device)": (
            f"{len(events):,} ({len(anonymous):,}; {stitched:,})"
        ),
        "marketing consent in force at as-of": f"{marketing_consent_share(tables, as_of):.0%}",
        "locales": ", ".join(f"{k} {v:.0%}" for k, v in locales.items()),
        "consumable pairs bought on 2+ days": f"{int((repeat >= 2).sum()):,}",
    }
    if truth_folder is not None and (truth_folder / "customers.parquet").is_file():
        truth = pd.read_parquet(truth_folder / "customers.parquet")
        pairs = pd.read_parquet(truth_folder / "replenishment.parquet")
        summary["truth: customers who buy in the next 90 days"] = (
            f"{truth['purchased_within_horizon'].mean():.0%}"
        )
        summary["truth: consumable pairs rebought in the next 14 days"] = (
            f"{pairs['repurchased_within_window'].mean():.0%}"
        )
    return summary
