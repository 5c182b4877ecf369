"""Frustration and intent on 150 held-out chat messages (en, zh-TW, zh-CN) written for these
tests: complaints, sarcasm, negated complaints, neutral questions, praise, reorders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from policy.language import read_message

MESSAGES = Path(__file__).with_name("data") / "messages.csv"


@pytest.fixture(scope="module")
def readings():
    rows = list(csv.DictReader(MESSAGES.open(encoding="utf-8")))
    return [(row, read_message(row["text"])) for row in rows]


def _precision_recall(pairs) -> tuple[float, float]:
    tp = sum(got.frustrated and row["frustrated"] == "1" for row, got in pairs)
    said = sum(got.frustrated for _, got in pairs)
    truly = sum(row["frustrated"] == "1" for row, _ in pairs)
    return tp / said, tp / truly


def test_frustrated_precision_and_recall_on_the_held_out_messages(readings):
    assert len(readings) >= 150
    assert {row["locale"] for row, _ in readings} == {"en", "zh-TW", "zh-CN"}
    precision, recall = _precision_recall(readings)
    print(f"frustrated: precision {precision:.3f}, recall {recall:.3f} on {len(readings)}")
    assert precision >= 0.85 and recall >= 0.85
    for locale in ("en", "zh-TW", "zh-CN"):
        precision, recall = _precision_recall([p for p in readings if p[0]["locale"] == locale])
        assert precision >= 0.8 and recall >= 0.85, locale


def test_intent_in_every_locale(readings):
    for locale in ("en", "zh-TW", "zh-CN"):
        mine = [(row, got) for row, got in readings if row["locale"] == locale]
        right = sum((got.intent or "none") == row["intent"] for row, got in mine)
        assert right / len(mine) >= 0.9, locale


@pytest.mark.parametrize(
    ("message", "frustrated", "intent"),
    [
        ("I'm really frustrated, nobody answers my emails", True, "complaint"),
        ("你们的服务太差了，我很不满意", True, "complaint"),
        ("包裹一直沒來，真的很煩", True, "complaint"),
        ("No complaints, the ink works great, thanks!", False, None),
        ("Can you reorder my ink?", False, "reorder"),
        ("Where is my order?", False, "order_status"),
        ("沒有什麼不滿意的，謝謝", False, None),
    ],
    ids=["en frustrated", "zh-CN complaint", "zh-TW complaint", "negated", "reorder",
         "order status", "zh-TW negated"],
)  # fmt: skip
def test_the_reported_cases(message, frustrated, intent):
    got = read_message(message)
    assert (got.frustrated, got.intent) == (frustrated, intent)


def test_the_chatbots_own_sentiment_counts_when_lower():
    calm = read_message("Where is my order?")
    assert not calm.frustrated
    told = read_message("Where is my order?", sentiment=-0.8)
    assert told.frustrated and told.sentiment == -0.8
