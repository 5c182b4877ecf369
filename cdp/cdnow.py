"""The CDNOW master dataset (shipped inside lifetimes) as a contract folder.

CDNOW: 69,659 purchases of CDs by 23,570 customers who first bought in the first quarter
of 1997, followed to the end of June 1998 (Fader, Hardie and Lee, 2005). Each line has a
customer id, a date, a number of CDs and a dollar value. Mapping:

- ``customers``: one row per id (kept as strings, ``00001``); ``created_at`` is the first
  purchase (the dataset has no sign-up date); locale ``en``, country ``US``.
- ``products``: one product, ``cdnow-cd`` ("CDs"), not consumable, priced at the median
  dollar value per CD.
- ``orders``: one line per source line; lines of one customer on one day form one order
  (``00002-19970112``); quantity = number of CDs, amount = dollar value.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd

from cdp.errors import BadInputError

PRODUCT_ID = "cdnow-cd"


def cdnow_master_path() -> Path:
    """Where lifetimes keeps ``CDNOW_master.txt`` (found without importing lifetimes)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        raise BadInputError("lifetimes is not installed: it ships the CDNOW dataset")
    return Path(spec.origin).parent / "datasets" / "CDNOW_master.txt"


def cdnow_tables(path: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """Read the CDNOW master file into contract tables (customers, products, orders)."""
    path = Path(path) if path is not None else cdnow_master_path()
    if not path.is_file():
        raise BadInputError(f"{path}: CDNOW master file not found")
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        dtype={"customer_id": "str", "date": "str", "number_of_cds": "int64"},
    )
    expected = {"customer_id", "date", "number_of_cds", "dollar_value"}
    if not expected <= set(raw.columns):
        raise BadInputError(
            f"{path}: expected columns {sorted(expected)}, found {list(raw.columns)}"
        )
    ordered_at = pd.to_datetime(raw["date"], format="%Y%m%d", utc=True).dt.as_unit("us")
    orders = pd.DataFrame(
        {
            "order_id": raw["customer_id"] + "-" + raw["date"],
            "customer_id": raw["customer_id"],
            "ordered_at": ordered_at,
            "product_id": PRODUCT_ID,
            "quantity": raw["number_of_cds"],
            "amount": raw["dollar_value"].astype("float64"),
        }
    ).astype({"order_id": "str", "customer_id": "str", "product_id": "str"})
    customers = (
        orders.groupby("customer_id", as_index=False)["ordered_at"]
        .min()
        .rename(columns={"ordered_at": "created_at"})
        .assign(country="US", locale="en")
        .astype({"customer_id": "str", "country": "str", "locale": "str"})
    )
    unit_price = (orders["amount"] / orders["quantity"]).median()
    products = pd.DataFrame(
        {
            "product_id": [PRODUCT_ID],
            "name": ["CDs"],
            "category": ["music"],
            "consumable": [False],
            "price": [round(float(unit_price), 2)],
        }
    ).astype({"product_id": "str", "name": "str", "category": "str"})
    return {"customers": customers, "products": products, "orders": orders}
