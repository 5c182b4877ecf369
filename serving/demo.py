"""The scripted conversation of ``make demo``: a chatbot talking to a running service.

1. a zh-TW customer whose ink (or another consumable) is due: a refill reminder in zh-TW;
2. the same customer, frustrated: a human first, no sales pitch;
3. an unknown visitor (a cookie): generic help only; the visitor logs in (the CDP sends the
   cookie identity through ``POST /events``) and the next answer is personal.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> bool:
    """Poll ``url``/readyz until 200 (``True``), or until ``process`` exits or ``timeout``
    seconds pass (``False``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def pick_customer(data: Path, features: Path, now: pd.Timestamp, window_days: int = 14) -> str:
    """A zh-TW customer with marketing consent whose consumable (ink first) is due."""
    pairs = pd.read_parquet(features / "pairs.parquet")
    customers = pd.read_parquet(data / "customers.parquet").set_index("customer_id")
    consents = pd.read_parquet(data / "consents.parquet")
    consents = consents[(consents["purpose"] == "marketing") & (consents["recorded_at"] <= now)]
    latest = consents.sort_values("recorded_at").drop_duplicates("customer_id", keep="last")
    allowed = set(latest.loc[latest["granted"], "customer_id"])
    due = pairs[
        pairs["customer_id"].isin(allowed)
        & (pairs["expected_next_purchase_at"] > now)
        & (pairs["expected_next_purchase_at"] <= now + pd.Timedelta(days=window_days))
    ].join(customers["locale"], on="customer_id")
    due = due.assign(
        zh_tw=due["locale"] == "zh-TW", ink=due["product_id"].str.startswith("P-INK")
    ).sort_values(["zh_tw", "ink", "purchase_days"], ascending=False)
    if due.empty:
        raise SystemExit("demo: no customer with a consumable due in the window")
    return str(due.iloc[0]["customer_id"])


def conversation(
    url: str,
    chatbot_key: str,
    admin_key: str,
    customer_id: str,
    say: Callable[[str, dict], None],
) -> None:
    """Run the three scenes against ``url``; ``say(title, answer)`` prints each answer."""
    chat = {"x-api-key": chatbot_key}
    with httpx.Client(base_url=url, timeout=30) as client:

        def suggest(body: dict) -> dict:
            response = client.post("/suggest", json=body, headers=chat)
            response.raise_for_status()
            return response.json()

        say("1. a customer whose refill is due", suggest({"customer_id": customer_id}))
        say(
            "2. the same customer, frustrated",
            suggest(
                {
                    "customer_id": customer_id,
                    "context": {"message": "我的訂單還沒收到，太糟糕了", "sentiment": -0.7},
                }
            ),
        )
        visitor = {"identity": {"id_type": "cookie", "id_value": "demo-cookie-0001"}}
        say("3a. an unknown visitor", suggest(visitor))
        login = {
            "identities": [
                {"customer_id": customer_id, "id_type": "cookie", "id_value": "demo-cookie-0001"}
            ]
        }
        client.post("/events", json=login, headers={"x-api-key": admin_key}).raise_for_status()
        say("3b. the visitor logs in (cookie stitched to the customer)", suggest(visitor))
