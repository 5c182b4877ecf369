"""A simulated grocery shop: a large catalog in a hierarchy, weekly trips, staples on cycles.

The catalog (:func:`grocery_catalog`) has departments, categories and *needs* (whole milk,
espresso beans: what several products serve), each need a few to a few hundred products of
different brands. Popularity is long-tailed twice: needs by a Zipf law (exponent 1.1), and
products within a need by another (exponent 1.3).

A household (:func:`grocery_lines`) shops on trips: a renewal process with a personal
interval (lognormal around 7 days, jitter sigma 0.35) while active (the population's
segments). It has 4 to 30 *staples*, needs bought on a personal cycle (the need's base cycle
x lognormal(0, 0.3) per unit), half of them for life and half for a phase (starting any
time, lasting ~150 days: a diet, a baby, a season). A staple is bought on the first trip at
or after it is due, ``q`` units at a time (1, or 2-7 for needs sold in multiples), and is
due again ``cycle x q x lognormal(0, 0.15)`` days later. Brand loyalty: 85% of a staple's
purchases are the household's usual product for the need; the rest another product of the
need (by popularity), which becomes the usual one 20% of the time. The rest of a basket
(about 10 lines in all) is the household's own favourites (45%: 30 products each, drawn by
popularity) or anything in the catalog by popularity, its own staple needs left out (they
come on their cycle). Tastes drift: each favourite is kept for a period of its own
(lognormal around ``FAVOURITE_DAYS``, 180 days, at least 30), then another takes its place,
so what a household bought most a year ago is not always what it buys now. 1% of lines
come back 1-14 days later as their own order, refunded.

Households leave gradually (partial defection, as in grocery panels: Buckinx and Van den
Poel, "Customer base analysis: partial defection of behaviourally loyal clients in a
non-contractual FMCG retail setting", EJOR 2005). In the ``DRIFT_DAYS`` before a lapse
their trips come up to ``1 + DRIFT_SLOWER`` times further apart, their baskets shrink to
half, and ``DRIFT_DROP`` of their staples stop at a moment drawn in that time (bought
elsewhere from then on).

Memory grows with order lines, households x staples and households x favourites x
(simulated days / 30) (the favourites a slot may hold in turn); the catalog is drawn as
arrays (products), never households x catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from cdp.world.common import ids
from cdp.world.population import Population
from cdp.world.purchases import Lines

# department: its categories (a need is a qualifier of one of these)
DEPARTMENTS = {
    "dairy": ("milk", "yogurt", "cheese", "butter", "cream", "eggs"),
    "bakery": ("bread", "rolls", "cake", "crackers"),
    "produce": ("apples", "bananas", "salad", "tomatoes", "potatoes", "onions", "berries"),
    "meat & fish": ("chicken", "beef", "pork", "sausages", "salmon", "tuna"),
    "frozen": ("frozen vegetables", "ice cream", "frozen pizza", "frozen meals"),
    "pantry": ("pasta", "rice", "flour", "oil", "sauce", "soup", "cereal", "spices", "jam"),
    "beverages": ("coffee", "tea", "juice", "water", "soda", "beer", "wine"),
    "snacks": ("chips", "chocolate", "biscuits", "nuts", "sweets"),
    "household": ("detergent", "dish soap", "paper towels", "toilet paper", "bin bags"),
    "personal care": ("shampoo", "toothpaste", "soap", "deodorant", "razors"),
    "baby": ("diapers", "baby food", "wipes"),
    "pets": ("cat food", "dog food", "cat litter"),
    "home & kitchen": ("storage boxes", "kitchen tools", "candles"),
}
#: Days one unit of a need lasts an average household, by department.
BASE_CYCLE = {
    "dairy": 6,
    "bakery": 5,
    "produce": 6,
    "meat & fish": 9,
    "frozen": 18,
    "pantry": 28,
    "beverages": 12,
    "snacks": 10,
    "household": 35,
    "personal care": 40,
    "baby": 8,
    "pets": 14,
    "home & kitchen": 0,  # durable: not on a cycle
}
QUALIFIERS = (
    "classic", "organic", "light", "whole", "family", "premium", "value", "fresh", "mini",
    "extra", "natural", "spicy", "sweet", "plain", "mixed", "smoked", "dark", "gold", "wild",
    "sliced", "instant", "sparkling", "greek", "original", "lactose-free", "vegan", "large",
    "baby", "honey", "lemon", "vanilla", "garlic", "herb", "sea salt", "chili", "berry",
    "tropical", "roasted", "creamy", "crunchy",
)  # fmt: skip
SYLLABLES = (
    "sun", "nor", "vik", "ber", "ga", "lo", "ma", "ri", "to", "fel", "den", "ar",
    "wel", "ton", "ka", "mi", "ro", "sa", "lin", "dor", "bel", "qua", "zen", "ha",
)  # fmt: skip
SIZES = ("250 g", "500 g", "1 kg", "1 L", "2 L", "6 x 330 ml", "150 g", "400 g", "12 pack")

STAPLE_SHARE = 0.85  # of a staple's purchases, the usual product
SWITCH = 0.2  # an other product bought becomes the usual one
FAVOURITES = 30
PHASE_SHARE = 0.5  # of staples, bought for a phase of a household's life, not all of it
PHASE_DAYS = 150  # mean length of such a phase
FAVOURITE_SHARE = 0.45
FAVOURITE_DAYS = 180.0  # a favourite lasts about this long, then another takes its place
DRIFT_DAYS = 60.0  # before a lapse, the household drifts to another shop
DRIFT_SLOWER = 1.5  # trips up to 2.5x further apart at the lapse
DRIFT_DROP = 0.5  # of a lapsing household's staples, those that stop during the drift


@dataclass(frozen=True)
class Catalog:
    """The grocery catalog (the contract ``products`` table with ``department``, ``need``
    and ``brand``), and per product its need number, popularity weight and base cycle;
    per need its first product (products of one need are contiguous) and multiple flag."""

    products: pd.DataFrame
    need: np.ndarray  # per product
    weight: np.ndarray  # per product, sums to 1
    need_start: np.ndarray  # per need + 1: products of need k are need_start[k]:need_start[k+1]
    need_weight: np.ndarray  # per need, sums to 1
    need_cycle: np.ndarray  # per need, days (0: durable)
    need_multiple: np.ndarray  # per need: bought several at a time


def _brands(rng: np.random.Generator, n: int) -> np.ndarray:
    syllables = np.array(SYLLABLES)
    parts = syllables[rng.integers(0, syllables.size, (n, 3))]
    names = pd.Series(parts[:, 0]).str.cat([parts[:, 1], parts[:, 2]]).str.capitalize()
    return np.where(np.arange(n) % 7 == 0, names + " & Co", names)


def grocery_catalog(rng: np.random.Generator, products: int) -> Catalog:
    """``products`` products (at least 100) in departments, categories and needs."""
    categories = [(d, c) for d, cs in DEPARTMENTS.items() for c in cs]
    n_needs = int(np.clip(products // 25, 20, len(categories) * len(QUALIFIERS)))
    # every category first, then qualifiers of them in a shuffled order
    combos = rng.permutation(len(categories) * len(QUALIFIERS))
    first = np.arange(len(categories)) * len(QUALIFIERS)
    combos = np.concatenate([first, combos[~np.isin(combos, first)]])[:n_needs]
    need_category = combos // len(QUALIFIERS)
    need_name = np.array(
        [
            f"{QUALIFIERS[q]} {categories[c][1]}"
            for c, q in zip(need_category, combos % len(QUALIFIERS), strict=True)
        ]
    )
    need_weight = 1.0 / np.arange(1, n_needs + 1) ** 1.1
    need_weight = rng.permutation(need_weight)
    need_weight /= need_weight.sum()
    # products per need: at least 1, the rest spread like the needs' popularity (long tail)
    extra = rng.multinomial(products - n_needs, 0.5 * need_weight + 0.5 / n_needs)
    counts = 1 + extra
    need_start = np.r_[0, np.cumsum(counts)]
    need = np.repeat(np.arange(n_needs), counts)
    rank = np.arange(products) - need_start[need]  # 0 = the need's most popular product
    within = 1.0 / (1 + rank) ** 1.3
    weight = need_weight[need] * within / np.bincount(need, weights=within)[need]
    weight /= weight.sum()
    department = np.array([categories[c][0] for c in need_category])
    cycle = np.array([BASE_CYCLE[d] for d in department], dtype=float)
    cycle = cycle * rng.lognormal(0.0, 0.3, n_needs)
    multiple = rng.random(n_needs) < 0.2
    brands = _brands(rng, max(products // 60, 20))
    brand = brands[rng.integers(0, brands.size, products)]
    base_price = rng.lognormal(np.log(3.5), 0.6, n_needs)
    price = np.round(base_price[need] * rng.lognormal(0.0, 0.25, products), 2)
    price[rng.random(products) < 0.002] = 0.0  # free items (bags, samples)
    size = np.array(SIZES)[rng.integers(0, len(SIZES), products)]
    name = pd.Series(brand) + " " + pd.Series(need_name[need]) + " " + pd.Series(size)
    frame = pd.DataFrame(
        {
            "product_id": ids("G", np.arange(1, products + 1), 6),
            "name": name.astype("str"),
            "category": pd.Series(
                np.array([categories[c][1] for c in need_category])[need], dtype="str"
            ),
            "consumable": cycle[need] > 0,
            "price": price,
            "pack_size": np.ones(products, dtype="int64"),
            "department": pd.Series(department[need], dtype="str"),
            "need": pd.Series(need_name[need], dtype="str"),
            "brand": pd.Series(brand, dtype="str"),
        }
    )
    return Catalog(frame, need, weight, need_start, need_weight, cycle, multiple)


def shoppers(rng: np.random.Generator, pop: Population) -> Population:
    """The population as grocery households: a trip about once a week (rate per day)."""
    interval = rng.lognormal(np.log(7.0), 0.35, pop.size)
    return replace(pop, rate=1.0 / interval)


def trips(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """Each household's trips (owner, day), sorted by owner then day: a renewal process
    with the household's interval (1 / ``pop.rate``) x lognormal(0, 0.35), in both active
    segments, stretched while it drifts away before a lapse. The loop advances every
    household still shopping by one trip."""
    s1, e1, s2, e2 = pop.segments()
    owner = np.concatenate([np.arange(pop.size), np.arange(pop.size)])
    start, end = np.concatenate([s1, s2]), np.concatenate([e1, e2])
    interval = 1.0 / pop.rate[owner]
    t = start + rng.uniform(0, 1, owner.size) * interval
    alive = t < end
    owner, t, end, interval = owner[alive], t[alive], end[alive], interval[alive]
    out_owner, out_t = [], []
    while owner.size:
        out_owner.append(owner)
        out_t.append(t)
        slower = 1.0 + DRIFT_SLOWER * (1.0 - pop.fade(owner, t, DRIFT_DAYS))
        t = t + interval * slower * rng.lognormal(0.0, 0.35, owner.size)
        alive = t < end
        owner, t, end, interval = owner[alive], t[alive], end[alive], interval[alive]
    owner, t = np.concatenate(out_owner), np.concatenate(out_t)
    order = np.lexsort((t, owner))
    return owner[order], t[order]


def _draw_in_need(rng: np.random.Generator, catalog: Catalog, need: np.ndarray) -> np.ndarray:
    """One product of each ``need`` by popularity within it (inverse CDF per need)."""
    cumulative = np.cumsum(catalog.weight)
    low = np.where(catalog.need_start[need] > 0, cumulative[catalog.need_start[need] - 1], 0.0)
    high = cumulative[catalog.need_start[need + 1] - 1]
    u = low + rng.random(need.size) * (high - low)
    product = np.searchsorted(cumulative, u, side="right")
    return np.clip(product, catalog.need_start[need], catalog.need_start[need + 1] - 1)


@dataclass(frozen=True)
class Staples:
    """Household x need pairs bought on a cycle: owner, need, days one unit lasts, and the
    days the staple is bought from and until (a phase of a household's life)."""

    owner: np.ndarray
    need: np.ndarray
    cycle: np.ndarray
    start: np.ndarray
    end: np.ndarray


def staples(rng: np.random.Generator, pop: Population, catalog: Catalog) -> Staples:
    """4-30 staple needs per household (by need popularity, consumable needs only)."""
    per = np.clip(rng.poisson(12, pop.size), 4, 30)
    owner = np.repeat(np.arange(pop.size), per)
    weights = np.where(catalog.need_cycle > 0, catalog.need_weight, 0.0)
    need = rng.choice(weights.size, size=owner.size, p=weights / weights.sum())
    pairs = pd.DataFrame({"owner": owner, "need": need}).drop_duplicates()
    owner, need = pairs["owner"].to_numpy(), pairs["need"].to_numpy()
    cycle = catalog.need_cycle[need] * rng.lognormal(0.0, 0.3, owner.size)
    # half are for life; half a phase that starts any time and lasts ~150 days (a diet, a
    # baby, a season): what a household bought most often is not always what it buys now
    phase = rng.random(owner.size) < PHASE_SHARE
    start = pop.created[owner] + np.where(phase, rng.uniform(0, pop.span, owner.size), 0.0)
    end = np.where(phase, start + rng.exponential(PHASE_DAYS, owner.size), np.inf)
    # a lapsing household buys some of its staples elsewhere first
    lapse = pop.lapse[owner]
    drop = np.isfinite(lapse) & (rng.random(owner.size) < DRIFT_DROP)
    stop = lapse - rng.uniform(0, DRIFT_DAYS, owner.size)
    end = np.where(drop, np.minimum(end, stop), end)
    return Staples(owner, need, cycle, start, end)


def staple_lines(
    rng: np.random.Generator, catalog: Catalog, staple: Staples, trip_owner, trip_t
) -> Lines:
    """Every staple bought on the first trip at or after it is due (see the module)."""
    span = float(trip_t.max(initial=0.0)) + 1.0
    key = trip_owner * span + trip_t
    pair = np.arange(staple.owner.size)
    usual = _draw_in_need(rng, catalog, staple.need)
    due = staple.start + rng.uniform(0, 1, pair.size) * staple.cycle  # the first due day
    out_pair, out_trip, out_product, out_q = [], [], [], []
    while pair.size:
        owner = staple.owner[pair]
        j = np.searchsorted(key, owner * span + due[pair], side="left")
        j = np.minimum(j, key.size - 1)
        found = (trip_owner[j] == owner) & (trip_t[j] >= due[pair]) & (trip_t[j] < staple.end[pair])
        pair, j = pair[found], j[found]
        if not pair.size:
            break
        need = staple.need[pair]
        other = _draw_in_need(rng, catalog, need)
        loyal = rng.random(pair.size) < STAPLE_SHARE
        product = np.where(loyal, usual[pair], other)
        switch = ~loyal & (rng.random(pair.size) < SWITCH)
        usual[pair[switch]] = other[switch]
        q = np.where(catalog.need_multiple[need], 2 + rng.poisson(1.5, pair.size), 1).astype(
            "int64"
        )
        out_pair.append(pair)
        out_trip.append(j)
        out_product.append(product)
        out_q.append(q)
        due[pair] = trip_t[j] + staple.cycle[pair] * q * rng.lognormal(0.0, 0.15, pair.size)
    trip = np.concatenate(out_trip) if out_trip else np.zeros(0, dtype=int)
    return Lines(
        owner=trip_owner[trip],
        t=trip_t[trip],
        occasion=trip.astype(float),
        product_id=np.concatenate(out_product) if out_product else np.zeros(0, dtype=int),
        quantity=np.concatenate(out_q) if out_q else np.zeros(0, dtype="int64"),
    )


def basket_lines(
    rng: np.random.Generator,
    pop: Population,
    catalog: Catalog,
    trip_owner,
    trip_t,
    staple_count,
    staple: Staples,
) -> Lines:
    """The rest of each trip's basket: favourites and anything else, by popularity; a draw
    of one of the household's staple needs is left out (a staple comes on its cycle). A
    household drifting away before a lapse fills baskets down to half."""
    mean = rng.lognormal(np.log(12.5), 0.3, pop.size)  # ~10 lines once staples drawn are left out
    fuller = 0.5 + 0.5 * pop.fade(trip_owner, trip_t, DRIFT_DAYS)
    size = rng.poisson(mean[trip_owner] * fuller)
    extra = np.maximum(size - staple_count, 0)
    trip = np.repeat(np.arange(trip_owner.size), extra)
    owner = trip_owner[trip]
    # tastes drift: each favourite slot holds a product for a period of its own (about
    # FAVOURITE_DAYS), then another, drawn by popularity
    period = np.maximum(rng.lognormal(np.log(FAVOURITE_DAYS), 0.5, (pop.size, FAVOURITES)), 30.0)
    phase = rng.uniform(0, 1, (pop.size, FAVOURITES)) * period
    epochs = int(np.ceil(pop.span / 30.0)) + 2
    favourites = rng.choice(
        catalog.weight.size, size=(pop.size, FAVOURITES, epochs), p=catalog.weight
    )
    rank = 1.0 / np.arange(1, FAVOURITES + 1)
    slot = rng.choice(FAVOURITES, size=trip.size, p=rank / rank.sum())
    age = trip_t[trip] - pop.created[owner] + phase[owner, slot]
    epoch = np.clip((age // period[owner, slot]).astype(int), 0, epochs - 1)
    anything = rng.choice(catalog.weight.size, size=trip.size, p=catalog.weight)
    product = np.where(
        rng.random(trip.size) < FAVOURITE_SHARE, favourites[owner, slot, epoch], anything
    )
    q = np.where(rng.random(trip.size) < 0.85, 1, 2 + rng.poisson(1.0, trip.size))
    needs = catalog.need_weight.size
    keep = ~np.isin(owner * needs + catalog.need[product], staple.owner * needs + staple.need)
    return Lines(
        owner=owner[keep],
        t=trip_t[trip[keep]],
        occasion=trip[keep].astype(float),
        product_id=product[keep],
        quantity=q[keep].astype("int64"),
    )


def grocery_lines(
    rng: np.random.Generator, pop: Population, catalog: Catalog
) -> tuple[Lines, Staples]:
    """Every line bought (products as catalog row numbers; one occasion per trip) and the
    staples behind them."""
    trip_owner, trip_t = trips(rng, pop)
    staple = staples(rng, pop, catalog)
    bought = staple_lines(rng, catalog, staple, trip_owner, trip_t)
    staple_count = np.bincount(bought.occasion.astype(int), minlength=trip_owner.size)
    rest = basket_lines(rng, pop, catalog, trip_owner, trip_t, staple_count, staple)
    lines = Lines.concat([bought, rest])
    # a product twice in one basket (a staple also drawn as a favourite) is one line
    frame = pd.DataFrame(
        {"occasion": lines.occasion, "product": lines.product_id, "quantity": lines.quantity}
    )
    merged = frame.groupby(["occasion", "product"], as_index=False, sort=False)["quantity"].sum()
    occasion = merged["occasion"].to_numpy()
    trip = occasion.astype(int)
    return (
        Lines(
            owner=trip_owner[trip],
            t=trip_t[trip],
            occasion=occasion,
            product_id=merged["product"].to_numpy(),
            quantity=merged["quantity"].to_numpy(dtype="int64"),
        ),
        staple,
    )
