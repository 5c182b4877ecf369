"""The next best actions against what customers really did (``make eval-nba``).

A generated world (``BENCH_NBA_CUSTOMERS``, default 20,000, seed 4; ``BENCH_NBA_SHOP=grocery``
for the grocery world) is cut at ``T``: the
models are trained (as of the day before, as ``nextbest retrain`` does), the features built
and the state loaded from the rows at or before ``T`` only (a history folder that holds
nothing later), and ``nextbest suggest``'s table
(:func:`serving.outbound.suggest_all`) is scored against the orders of (T, T + 30 days].
Evaluated: the customers who had bought by ``T`` and whose marketing consent is in force
then (the only ones any marketing action may go to), the same set for every contender.

Figures (higher is better unless said):

- ``hit@1`` / ``hit@3``: the share of customers who bought the product of the first (any
  of the first three) product suggestions in the window; a pack of the same consumable
  (``products.variant_of``) counts as the product;
- ``reminder precision``: the share of refill reminders whose consumable was bought in the
  window;
- ``win-backs to active``: win-back offers sent to customers who were in truth still active
  at ``T`` (the world's truth), as a share of win-backs (lower is better);
- ``margin / customer``: the margin of the suggested products bought in the window, per
  evaluated customer.

Baselines in the same run: the most popular products of the last 90 days, the customer's
last products bought again, P-TopFreq (the customer's own most frequently bought products,
the baseline to beat in next-basket work: Li et al., ACM TOIS 2023), the last basket
repeated, the overdue rule (consumables whose run-out date falls in the
reminder window, the most overdue first), and the policy as it was before it was measured
(:func:`policy_before`).

Also printed: the churn model's validation figures against its baselines; where the policy
names a product (it names none whose expected value is not worth the contact), its first
product against P-TopFreq's for the same customers, and at equal reach (P-TopFreq sent to
as many customers, those whose top product they bought on the most days); and the
next-product model's first product for every customer.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

CUSTOMERS = int(os.environ.get("BENCH_NBA_CUSTOMERS", "20000"))
#: ``grocery``: the grocery world (``BENCH_NBA_PRODUCTS`` products, one year of history).
SHOP = os.environ.get("BENCH_NBA_SHOP", "gadgets")
PRODUCTS = int(os.environ.get("BENCH_NBA_PRODUCTS", "50000"))
T = pd.Timestamp("2025-06-30", tz="UTC")
WINDOW_DAYS = 30
TOP = 3
#: Each contract table's time column: a history folder keeps the rows at or before T.
TIMES = {
    "customers": "created_at",
    "orders": "ordered_at",
    "events": "occurred_at",
    "consents": "recorded_at",
}


def history(tables: dict[str, pd.DataFrame], at: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The tables as a CDP would have exported them at ``at``: no row dated later."""
    return {
        name: frame[frame[TIMES[name]] <= at] if name in TIMES else frame
        for name, frame in tables.items()
    }


def families(products: pd.DataFrame) -> pd.Series:
    """Product id -> the consumable it refills (``variant_of``, else itself)."""
    variant = products.get("variant_of", pd.Series(None, index=products.index))
    return pd.Series(
        variant.where(variant.notna(), products["product_id"]).to_numpy(),
        index=products["product_id"].to_numpy(),
    )


def scores(
    ranked: pd.DataFrame,
    bought: pd.DataFrame,
    customers: pd.Index,
    family: pd.Series,
    margin_of: pd.Series,
    before: pd.DataFrame | None = None,
) -> dict[str, float]:
    """hit@1, hit@3 and realised margin per customer of ranked product suggestions.

    ``ranked``: ``customer_id``, ``rank`` (1 = first), ``product_id`` (rows without a
    product are skipped: a product suggestion's position counts among products only);
    ``bought``: ``customer_id``, ``product_id`` of the window's orders; ``customers``: the
    evaluated customers (a customer with no product suggestion is a miss). With ``before``
    (``customer_id``, ``product_id`` bought by ``T``), hit@1 is also split into repeat
    items (a family the customer had bought) and new ones: the two add up to hit@1."""
    products = ranked.dropna(subset=["product_id"])
    products = products[products["customer_id"].isin(customers)].sort_values(
        ["customer_id", "rank"], kind="stable"
    )
    products = products.assign(
        position=products.groupby("customer_id").cumcount() + 1,
        family=products["product_id"].map(family),
    )
    won = bought.assign(family=bought["product_id"].map(family))[["customer_id", "family"]]
    hits = products.merge(
        won.drop_duplicates(), on=["customer_id", "family"], how="left", indicator=True
    )
    hits["hit"] = hits["_merge"] == "both"
    n = len(customers)
    out = {}
    for k in (1, TOP):
        first = hits[hits["position"] <= k]
        out[f"hit@{k}"] = first.loc[first["hit"], "customer_id"].nunique() / n
    if before is not None:
        had = before.assign(family=before["product_id"].map(family))[["customer_id", "family"]]
        first = hits[hits["position"] == 1].merge(
            had.drop_duplicates().assign(repeat=True), on=["customer_id", "family"], how="left"
        )
        repeat = first["repeat"].fillna(False).astype(bool)
        out["hit@1 repeat"] = first.loc[first["hit"] & repeat, "customer_id"].nunique() / n
        out["hit@1 new"] = first.loc[first["hit"] & ~repeat, "customer_id"].nunique() / n
    realised = hits[hits["hit"] & (hits["position"] <= TOP)]
    out["margin / customer"] = float(realised["product_id"].map(margin_of).sum()) / n
    return out


def frequencies(orders: pd.DataFrame) -> pd.DataFrame:
    """Per customer and product bought (``quantity`` > 0): ``times``, its purchase days, and
    ``latest``, when it was last bought."""
    bought = orders[orders["quantity"] > 0]
    return (
        bought.assign(day=bought["ordered_at"].dt.floor("D"))
        .groupby(["customer_id", "product_id"])
        .agg(times=("day", "nunique"), latest=("ordered_at", "max"))
    )


def baselines(
    past: dict[str, pd.DataFrame], pairs: pd.DataFrame, at: pd.Timestamp, window_days: int
) -> dict[str, pd.DataFrame]:
    """Ranked products per customer of the three baselines (``customer_id``, ``rank``,
    ``product_id``)."""
    orders = past["orders"]
    orders = orders[orders["quantity"] > 0]
    buyers = orders["customer_id"].unique()
    recent = orders[orders["ordered_at"] > at - pd.Timedelta(days=90)]
    top = recent.groupby("product_id")["quantity"].sum().nlargest(TOP).index
    popular = pd.DataFrame(
        {
            "customer_id": pd.Series(buyers).repeat(len(top)).to_numpy(),
            "rank": list(range(1, len(top) + 1)) * len(buyers),
            "product_id": list(top) * len(buyers),
        }
    )
    last = (
        orders.sort_values("ordered_at", ascending=False, kind="stable")
        .drop_duplicates(["customer_id", "product_id"])
        .assign(rank=lambda f: f.groupby("customer_id").cumcount() + 1)
    )
    last = last[last["rank"] <= TOP][["customer_id", "rank", "product_id"]]
    due = pairs[pairs["expected_next_purchase_at"] <= at + pd.Timedelta(days=window_days)]
    overdue = due.sort_values(["customer_id", "expected_next_purchase_at"], kind="stable").assign(
        rank=lambda f: f.groupby("customer_id").cumcount() + 1
    )
    overdue = overdue[overdue["rank"] <= TOP][["customer_id", "rank", "product_id"]]
    # P-TopFreq: the customer's own products by purchase days, the most recent of equals first
    days = orders.assign(day=orders["ordered_at"].dt.floor("D"))
    freq = (
        frequencies(orders)
        .reset_index()
        .sort_values(["customer_id", "times", "latest"], ascending=[True, False, False])
    )
    topfreq = freq.assign(rank=freq.groupby("customer_id").cumcount() + 1)
    topfreq = topfreq[topfreq["rank"] <= TOP][["customer_id", "rank", "product_id"]]
    # repeat the last basket: the products of the customer's last order day, most bought first
    final = days.groupby("customer_id")["day"].transform("max")
    basket = days.loc[days["day"] == final, ["customer_id", "product_id"]].drop_duplicates()
    basket = basket.merge(freq, on=["customer_id", "product_id"]).sort_values(
        ["customer_id", "times", "latest"], ascending=[True, False, False]
    )
    basket = basket.assign(rank=basket.groupby("customer_id").cumcount() + 1)
    basket = basket[basket["rank"] <= TOP][["customer_id", "rank", "product_id"]]
    return {
        "most popular": popular,
        "last bought again": last,
        "P-TopFreq": topfreq,
        "repeat last basket": basket,
        "overdue rule": overdue,
    }


def model_first(state, customers: pd.Index) -> pd.DataFrame:
    """The served state's next products of each customer, most likely first (the
    next-product model's ranking before the policy weighs value, cost and consent)."""
    rows = [
        (customer_id, rank, product_id)
        for customer_id in customers
        for rank, (product_id, _, _) in enumerate(
            state.customers[customer_id].next_products[:TOP], start=1
        )
    ]
    return pd.DataFrame(rows, columns=["customer_id", "rank", "product_id"])


def policy_figures(
    suggested: pd.DataFrame, bought: pd.DataFrame, active: pd.Series, family: pd.Series
) -> dict[str, float]:
    """Reminder precision and the share of win-backs sent to customers truly active."""
    won = set(zip(bought["customer_id"], bought["product_id"].map(family), strict=True))
    reminders = suggested[suggested["action"] == "replenishment_reminder"]
    hit = [
        (c, f) in won
        for c, f in zip(reminders["customer_id"], reminders["product_id"].map(family), strict=True)
    ]
    winbacks = suggested[suggested["action"] == "winback_offer"]
    return {
        "reminders": float(len(reminders)),
        "reminder precision": sum(hit) / len(hit) if hit else float("nan"),
        "win-backs": float(len(winbacks)),
        "win-backs to active": float(active.reindex(winbacks["customer_id"]).fillna(False).mean())
        if len(winbacks)
        else float("nan"),
    }


def policy_before(catalog):
    """The catalog as the policy ran before it was measured: a win-back for any churn
    probability of 0.5 or more, however recent the last order, and every reminder the
    run-out date makes due (and, set on the state, the cross-sell of co-purchase rules
    instead of the next-product model)."""
    actions = {
        name: dataclasses.replace(catalog[name], due=None)
        for name in ("winback_offer", "replenishment_reminder")
    }
    return dataclasses.replace(catalog, actions={**catalog.actions, **actions})


def run() -> None:
    from cdp.io import write_tables
    from cdp.world.config import WorldConfig
    from cdp.world.generate import generate_grocery_world, generate_world
    from features.build import build_features
    from features.config import FeatureConfig
    from features.io import write_snapshot
    from policy.catalog import DEFAULT, load_catalog
    from serving.memory.snapshot import load_snapshot
    from serving.outbound import suggest_all
    from training import pipeline, registry

    warnings.filterwarnings("ignore", module="lifetimes")
    started = time.perf_counter()
    if SHOP == "grocery":
        config = WorldConfig(customers=CUSTOMERS, seed=4, as_of=T, history_days=365)
        world = generate_grocery_world(config, PRODUCTS)
    else:
        world = generate_world(WorldConfig(customers=CUSTOMERS, seed=4, as_of=T))
    past = history(world.tables, T)
    end = T + pd.Timedelta(days=WINDOW_DAYS)
    orders = world.tables["orders"]
    bought = orders[(orders["ordered_at"] > T) & (orders["ordered_at"] <= end)]
    bought = bought[bought["quantity"] > 0][["customer_id", "product_id"]]
    config = FeatureConfig()
    catalog = load_catalog(DEFAULT)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "history"
        write_tables(past, folder)
        registry.configure(Path(tmp) / "mlruns")
        # trained as `nextbest retrain` trains by default: as of the latest complete day
        # (a window ending at T needs data past T to be known complete)
        trained = T - pd.Timedelta(days=1)
        report = pipeline.train(folder, as_of=trained, config=config, root=Path(tmp) / "mlruns")
        built = build_features(folder, as_of=T, config=config)
        write_snapshot(built, config, folder, Path(tmp) / "features")
        state = load_snapshot(data=folder, features=Path(tmp) / "features")
        suggested, _ = suggest_all(state, catalog, now=T, max_actions=TOP)
        state.learned_cross_sell = False  # the co-purchase rules, as before the model
        before, _ = suggest_all(state, policy_before(catalog), now=T, max_actions=TOP)
    print(
        f"{SHOP}: {CUSTOMERS:,} customers, suggestions as of {T.date()}, scored on the orders"
        f" of the next {WINDOW_DAYS} days ({time.perf_counter() - started:.0f} s to build)"
    )
    evaluated = pd.Index(
        sorted(c for c in state.customers if state.allows(c, "marketing", T.to_pydatetime()))
    ).intersection(past["orders"]["customer_id"].unique())
    products = world.tables["products"]
    family = families(products)
    margin_of = products.set_index("product_id")["price"] * catalog.margin
    truth = world.truth["customers"].set_index("customer_id")["active_at_as_of"]
    had = past["orders"][past["orders"]["quantity"] > 0][["customer_id", "product_id"]]
    rows = {}
    for name, table in (("nextbest policy", suggested), ("policy before", before)):
        rows[name] = scores(table, bought, evaluated, family, margin_of, had)
        rows[name] |= policy_figures(table, bought, truth, family)
    ranked_by = baselines(past, built.pairs, T, config.window_days)
    ranked_by["next-product model's first (every customer)"] = model_first(state, evaluated)
    for name, ranked in ranked_by.items():
        rows[name] = scores(ranked, bought, evaluated, family, margin_of, had)
    churn = report.metrics["churn"][["roc_auc", "pr_auc"]]
    print("churn on the validation cutoff (the model against its baselines):")
    print(churn.to_string(float_format=lambda v: f"{v:.4f}"))
    table = pd.DataFrame(rows).T
    print(f"evaluated: {len(evaluated):,} buyers with marketing consent in force at {T.date()}")
    print(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-"))
    ours = ["nextbest policy", "policy before", "next-product model's first (every customer)"]
    best = table.drop(index=ours)["hit@1"].max()
    mine, old = table.loc["nextbest policy", "hit@1"], table.loc["policy before", "hit@1"]
    # where the policy names a product at all (it proposes none whose expected value is not
    # worth the contact): its first product against P-TopFreq's for the same customers
    named = pd.Index(suggested.dropna(subset=["product_id"])["customer_id"].unique())
    named = evaluated.intersection(named)
    same = {
        "nextbest policy": scores(suggested, bought, named, family, margin_of)["hit@1"],
        "P-TopFreq": scores(ranked_by["P-TopFreq"], bought, named, family, margin_of)["hit@1"],
    }
    print(
        f"the policy names a product to {len(named):,} of {len(evaluated):,}: hit@1 there"
        f" {same['nextbest policy']:.3f} against P-TopFreq's {same['P-TopFreq']:.3f}"
        f" ({same['nextbest policy'] / same['P-TopFreq']:.2f}x)"
    )
    # at equal reach: P-TopFreq sent to as many customers, those whose top product they
    # bought on the most days (its own confidence), the latest buyers first among equals
    confident = (
        frequencies(past["orders"])
        .groupby(level="customer_id")
        .max()
        .reindex(evaluated)
        .sort_values(["times", "latest"], ascending=False, kind="stable")
    )
    reach = confident.index[: len(named)]
    reached = scores(ranked_by["P-TopFreq"], bought, reach, family, margin_of)["hit@1"]
    print(
        f"at equal reach ({len(named):,} customers each): the policy {same['nextbest policy']:.3f},"
        f" P-TopFreq to its most confident {reached:.3f}"
        f" ({same['nextbest policy'] / reached:.2f}x)"
    )
    # what the policy's silence saves: the model's first product named to the customers it
    # names none, its realised margin against the contacts' cost
    silent = evaluated.difference(named)
    first_only = ranked_by["next-product model's first (every customer)"]
    first_only = first_only[first_only["rank"] == 1]
    forced = scores(first_only, bought, silent, family, margin_of)
    cost = catalog["cross_sell"].cost
    print(
        f"naming the model's first product to the other {len(silent):,} as well: bought by"
        f" {forced['hit@1']:.3f} of them (the policy's hit@1 would be"
        f" {mine + forced['hit@1'] * len(silent) / len(evaluated):.3f}), margin"
        f" {forced['margin / customer'] * len(silent):,.0f} against"
        f" {cost * len(silent):,.0f} of contact cost"
    )
    first = table.loc["next-product model's first (every customer)", "hit@1"]
    print(
        f"the next-product model's first product for every customer: hit@1 {first:.3f}"
        f" ({first / table.loc['P-TopFreq', 'hit@1']:.2f}x P-TopFreq)"
    )
    print(
        f"hit@1: the policy {mine:.3f}, {mine / old:.1f}x the policy before ({old:.3f});"
        f" the best baseline {best:.3f} ({mine / best:.2f}x);"
        f" P-TopFreq {table.loc['P-TopFreq', 'hit@1']:.3f}"
        f" ({mine / table.loc['P-TopFreq', 'hit@1']:.2f}x)"
    )


if __name__ == "__main__":
    run()
