"""The served state's one consent check: the latest record at or before the moment decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.memory import updates
from serving.memory.customer import consent_in_force
from serving.memory.snapshot import index_products
from serving.schemas import EventBatch

T = datetime(2025, 6, 30, 12, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], False),
        ([(T - DAY, True)], True),
        ([(T - DAY, True), (T - DAY / 2, False)], False),
        ([(T + DAY, True)], False),
        ([(T - DAY, True), (T + DAY, False)], True),
        ([(T - DAY, False), (T, True)], True),
    ],
    ids=["none", "granted", "withdrawn", "granted later", "withdrawal later", "granted now"],
)
def test_consent_in_force_is_the_latest_record_at_or_before_now(history, expected):
    assert consent_in_force(history, T) is expected


def _ink_state():
    """A served state with one customer holding the single ink cartridge (30 days a unit,
    last bought 20 days ago) and a catalog where the 2-pack is a variant of it."""
    import pandas as pd

    from policy.profile import Consumable
    from serving.memory.customer import Customer
    from serving.memory.state import ServingState

    state = ServingState(versions={}, as_of=T, window_days=14)
    products = pd.DataFrame(
        {
            "product_id": ["P-INK", "P-INK-2", "P-MUG"],
            "name": ["Ink", "Ink 2-pack", "Mug"],
            "category": ["printing", "printing", "kitchen"],
            "consumable": [True, True, False],
            "price": [25.0, 45.0, 12.0],
            "pack_size": [1, 2, 1],
            "variant_of": [None, "P-INK", None],
        }
    )
    index_products(state, products)
    last = T - 20 * DAY
    state.customers["c1"] = Customer("c1", "en", "loyal")
    state.customers["c1"].consumables["P-INK"] = Consumable(
        "P-INK", {"en": "Ink"}, 25.0, 0.8, last + 30 * DAY, last + 25 * DAY, last + 35 * DAY, last
    )
    state.customers["c1"].cycle_days["P-INK"] = 30.0
    return state


@pytest.mark.parametrize(
    ("product_id", "quantity", "days"),
    [("P-INK", 1, 30), ("P-INK", 3, 90), ("P-INK-2", 1, 60), ("P-INK-2", 2, 120)],
    ids=["one cartridge", "three cartridges", "a 2-pack", "two 2-packs"],
)
def test_a_purchase_of_the_product_or_a_pack_of_it_refills_the_same_consumable(
    product_id, quantity, days
):
    from serving.schemas import EventBatch

    state = _ink_state()
    order = {"order_id": "o1", "customer_id": "c1", "ordered_at": T.isoformat()}
    order |= {"product_id": product_id, "quantity": quantity, "amount": 45.0}
    updates.apply(state, EventBatch.model_validate({"orders": [order]}))
    ink = state.customers["c1"].consumables["P-INK"]
    assert ink.last_purchase_at == T
    assert ink.expected_next_purchase_at == T + days * DAY
    assert ink.next_purchase_p90_at - ink.next_purchase_p10_at == 10 * DAY  # the spread stays


def test_a_purchase_of_another_product_refills_nothing():
    from serving.schemas import EventBatch

    state = _ink_state()
    before = state.customers["c1"].consumables["P-INK"]
    order = {"order_id": "o1", "customer_id": "c1", "ordered_at": T.isoformat()}
    order |= {"product_id": "P-MUG", "quantity": 1, "amount": 12.0}
    updates.apply(state, EventBatch.model_validate({"orders": [order]}))
    assert state.customers["c1"].consumables["P-INK"] == before


def test_a_durable_the_customer_owns_is_never_cross_sold_even_bought_a_minute_ago():
    """The next-product model's candidates are offered: the one worth most and the likeliest
    (named first); a durable the customer owns (also one bought online after the snapshot)
    never is, nor without marketing consent in force."""
    import pandas as pd

    from policy.catalog import load_catalog
    from policy.profile import Context
    from serving.schemas import EventBatch

    state = _ink_state()
    index_products(
        state,
        pd.DataFrame(
            {
                "product_id": ["P-PRINTER", "P-LAMP"],
                "name": ["Printer", "Lamp"],
                "category": ["printing", "home"],
                "consumable": [False, False],
                "price": [149.0, 39.0],
            }
        ),
    )
    state.learned_cross_sell = True
    c = state.customers["c1"]
    c.consents["marketing"] = [(T - DAY, True)]
    c.next_products = [
        ("P-PRINTER", 0.2, ("viewed_product_7d_high",)),
        ("P-LAMP", 0.3, ("category_share_high",)),
    ]
    catalog = load_catalog()

    def offered() -> list[str]:
        ranking = state.ranking("c1", Context(), catalog, now=T)
        return [s.product_id for s in ranking.suggestions if s.action == "cross_sell"]

    assert offered() == ["P-LAMP", "P-PRINTER"]  # likelier first; 0.2 x 149 is worth most
    suggestions = state.ranking("c1", Context(), catalog, now=T).suggestions
    cross = next(s for s in suggestions if s.product_id == "P-PRINTER")
    assert cross.reason_codes[:2] == ("LIKELY_NEXT_PURCHASE", "viewed_product_7d_high")
    assert "looked at it recently" in cross.reason
    order = {"order_id": "o9", "customer_id": "c1", "ordered_at": T.isoformat()}
    order |= {"product_id": "P-PRINTER", "quantity": 1, "amount": 149.0}
    updates.apply(state, EventBatch.model_validate({"orders": [order]}))
    assert offered() == ["P-LAMP"]
    c.consents["marketing"].append((T - DAY / 2, False))
    assert offered() == [] and state.profile("c1", T).cross_sell == []


def test_a_row_is_known_by_its_identity_not_by_its_date():
    """Rows the snapshot holds are skipped whatever their dates; rows it does not hold are
    applied, a late one dated before the as-of too, and a late order lands in date order."""
    import pandas as pd

    from serving.memory.known import snapshot_keys

    state = _ink_state()
    c = state.customers["c1"]
    c.consents["marketing"] = [(T - 400 * DAY, True)]
    for days, order_id in ((3, "o3"), (9, "o2")):
        c.recent_orders.append(
            {"order_id": order_id, "ordered_at": T - days * DAY, "amount": 5.0, "lines": 1}
        )
    snapshot = {
        "orders": pd.DataFrame({"order_id": ["o2", "o3"], "product_id": ["P-MUG", "P-MUG"]}),
        "events": pd.DataFrame({"event_id": ["e1", "e0"], "event_type": ["ticket_opened", "x"]}),
    }
    state.known_rows = snapshot_keys(snapshot)
    late = (T - 5 * DAY).isoformat()
    order = {"customer_id": "c1", "ordered_at": late, "quantity": 1, "amount": 5.0}
    orders = [
        order | {"order_id": "o2", "product_id": "P-MUG"},  # in the snapshot
        order | {"order_id": "o2", "product_id": "P-INK"},  # another line of it: not
        order | {"order_id": "o9", "product_id": "P-MUG"},  # late, not in the snapshot
    ]
    assert [o["product_id"] for o in state.new_rows("orders", orders)] == ["P-INK", "P-MUG"]
    event = {"customer_id": "c1", "occurred_at": late, "source": "web", "event_type": "x"}
    events = [event | {"event_id": "e1"}, event | {"event_id": "e2"}]
    assert [e["event_id"] for e in state.new_rows("events", events)] == ["e2"]
    consent = {"customer_id": "c1", "purpose": "marketing", "source": "cdp"}
    held = consent | {"granted": True, "recorded_at": (T - 400 * DAY).isoformat()}
    withdrawn = consent | {"granted": False, "recorded_at": late}  # late: before the as-of
    assert state.new_rows("consents", [held, withdrawn]) == [withdrawn]

    updates.apply(state, EventBatch.model_validate({"orders": orders[2:]}))
    assert [o["order_id"] for o in c.recent_orders] == ["o3", "o9", "o2"]
    updates.apply(state, EventBatch.model_validate({"consents": [withdrawn]}))
    assert not state.allows("c1", "marketing", T)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_consent_in_force_is_the_latest_acknowledged_whatever_the_order(data):
    """Random consent records for one customer: some in the CDP's export (the snapshot), any
    sent online (in a random arrival order, late ones dated before the snapshot's as-of
    too, some twice). After replay onto the snapshot, after catching up row by row, and after
    a reload onto a later export, the record in force at each moment is the latest by the
    CDP's time, and a withdrawal in force is never overridden by an older grant."""
    from serving.memory.customer import Customer
    from serving.memory.state import ServingState

    n = data.draw(st.integers(1, 8), label="records")
    hours = data.draw(st.lists(st.integers(-72, 72), min_size=n, max_size=n, unique=True))
    granted = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    records = [(T + timedelta(hours=h), g) for h, g in zip(hours, granted, strict=True)]
    exported = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="in export")
    online = data.draw(st.permutations(range(n)), label="arrival order")
    online = [i for i in online if not exported[i] or data.draw(st.booleans(), label="resent")]

    def row(i: int) -> dict:
        at, ok = records[i]
        return {"customer_id": "c1", "purpose": "marketing", "granted": ok,
                "recorded_at": at.isoformat(), "source": "cdp"}  # fmt: skip

    def snapshot(included: list[int]) -> ServingState:
        state = ServingState(versions={}, as_of=T, window_days=14)
        state.customers["c1"] = Customer("c1", "en", "loyal")
        history = sorted(records[i] for i in included)
        if history:
            state.customers["c1"].consents["marketing"] = history
        return state

    def replayed(state: ServingState, rows: list[dict]) -> ServingState:
        fresh = state.new_rows("consents", rows)
        if fresh:
            updates.apply(state, EventBatch.model_validate({"consents": fresh}))
        return state

    def expected(now: datetime) -> bool:
        known = [records[i] for i in range(n) if exported[i] or i in online]
        in_force = [r for r in known if r[0] <= now]
        return max(in_force)[1] if in_force else False

    first = [i for i in range(n) if exported[i]]
    states = {
        "replay": replayed(snapshot(first), [row(i) for i in online]),
        "catch-up": snapshot(first),
        "reload onto a later export": replayed(
            snapshot(first + [i for i in online[: len(online) // 2] if i not in first]),
            [row(i) for i in online],
        ),
    }
    for i in online:
        replayed(states["catch-up"], [row(i)])
    for hour in range(-80, 81, 4):
        now = T + timedelta(hours=hour)
        for name, state in states.items():
            assert state.allows("c1", "marketing", now) is expected(now), (name, hour)
