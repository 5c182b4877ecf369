"""The CDNOW import: every line and customer, ids as strings, and a valid contract folder."""

from __future__ import annotations

import pandas as pd

from cdp.cdnow import cdnow_tables
from cdp.io import write_tables
from cdp.validation import validate_folder


def test_cdnow_import_is_complete_and_valid(tmp_path):
    tables = cdnow_tables()
    write_tables(tables, tmp_path / "cdnow")
    frames, report = validate_folder(tmp_path / "cdnow")

    assert report.ok, [str(v) for v in report.violations]
    orders, customers = frames["orders"], frames["customers"]
    assert len(orders) == 69_659
    assert len(customers) == 23_570 == orders["customer_id"].nunique()
    assert customers["customer_id"].iloc[0] == "00001"
    assert orders["ordered_at"].min() == pd.Timestamp("1997-01-01", tz="UTC")
    assert orders["ordered_at"].max() == pd.Timestamp("1998-06-30", tz="UTC")
    assert round(orders["amount"].sum(), 2) == round(cdnow_raw_total(), 2)
    assert (orders["quantity"] > 0).all()
    assert not frames["products"]["consumable"].any()


def cdnow_raw_total() -> float:
    from cdp.cdnow import cdnow_master_path

    return float(pd.read_csv(cdnow_master_path(), sep=r"\s+")["dollar_value"].sum())


def test_first_purchase_is_sign_up():
    tables = cdnow_tables()
    first = tables["orders"].groupby("customer_id")["ordered_at"].min()
    created = tables["customers"].set_index("customer_id")["created_at"]
    assert (created == first.reindex(created.index)).all()
