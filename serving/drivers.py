"""Why the model says what it says about *this* customer: their own top drivers.

A win-back's reason is the customer's churn drivers, not a fixed ``CHURN_RISK``: the
features whose TreeSHAP contributions (through the calibration,
:meth:`training.classifier.CalibratedClassifier.contributions`) push this customer's churn
probability up the most. Each becomes a code, ``<feature>_high`` or ``<feature>_low`` (the
customer's value against the median of every customer scored with them; a category names its
value, ``segment_at_risk``), and the one-sentence reason names the strongest in the
customer's language (:func:`phrase`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

TOP = 2  # drivers kept per customer

#: What a driver says, by the feature's family (the first pattern that matches its name) and
#: direction: {family: (pattern, {direction: {locale: phrase}})}.
FAMILIES: dict[str, tuple[str, dict[str, dict[str, str]]]] = {
    "recency": (
        r"recency_days|r_score|days_since_last_event|^T$",
        {
            "high": {"en": "no purchase for a long time", "zh-TW": "已經很久沒有購買",
                     "zh-CN": "已经很久没有购买"},
            "low": {"en": "a recent purchase", "zh-TW": "最近才購買", "zh-CN": "最近才购买"},
        },
    ),
    "gap": (
        r"overdue_ratio|gap_",
        {
            "high": {"en": "longer than usual since the last order",
                     "zh-TW": "距上次下單比平常久", "zh-CN": "距上次下单比平常久"},
            "low": {"en": "orders come at a steady pace", "zh-TW": "下單頻率穩定",
                    "zh-CN": "下单频率稳定"},
        },
    ),
    "frequency": (
        r"frequency|f_score|purchase_days|^orders$|expected_purchases|p_alive|^recency$",
        {
            "high": {"en": "a regular buyer", "zh-TW": "經常購買", "zh-CN": "经常购买"},
            "low": {"en": "few purchases so far", "zh-TW": "購買次數不多", "zh-CN": "购买次数不多"},
        },
    ),
    "spend": (
        r"monetary|m_score|spend|clv|order_value",
        {
            "high": {"en": "spending more than most", "zh-TW": "消費金額較高",
                     "zh-CN": "消费金额较高"},
            "low": {"en": "spending less lately", "zh-TW": "消費金額偏低", "zh-CN": "消费金额偏低"},
        },
    ),
    "returns": (
        r"return",
        {
            "high": {"en": "many returns", "zh-TW": "退貨較多", "zh-CN": "退货较多"},
            "low": {"en": "few returns", "zh-TW": "很少退貨", "zh-CN": "很少退货"},
        },
    ),
    "complaint": (
        r"days_since_negative_sentiment",
        {
            "low": {"en": "an unhappy recent contact", "zh-TW": "近期互動不愉快",
                    "zh-CN": "近期互动不愉快"},
            "high": {"en": "no complaint for a long time", "zh-TW": "很久沒有抱怨",
                     "zh-CN": "很久没有抱怨"},
        },
    ),
    "sentiment": (
        r"^sentiment_",
        {
            "low": {"en": "an unhappy recent contact", "zh-TW": "近期互動不愉快",
                    "zh-CN": "近期互动不愉快"},
            "high": {"en": "a friendly recent contact", "zh-TW": "近期互動良好",
                     "zh-CN": "近期互动良好"},
        },
    ),
    "support": (
        r"support_tickets",
        {
            "high": {"en": "recent support tickets", "zh-TW": "近期有客服案件",
                     "zh-CN": "近期有客服工单"},
            "low": {"en": "no recent support contact", "zh-TW": "近期沒有聯繫客服",
                    "zh-CN": "近期没有联系客服"},
        },
    ),
    "engagement": (
        r"views|email_|chat_|stitched",
        {
            "high": {"en": "still browsing and reading", "zh-TW": "仍常瀏覽與閱讀訊息",
                     "zh-CN": "仍常浏览与阅读消息"},
            "low": {"en": "less browsing and fewer email opens", "zh-TW": "瀏覽與開信變少",
                    "zh-CN": "浏览与开信变少"},
        },
    ),
}  # fmt: skip
#: For a feature no family names (a category such as the segment, or tenure).
OTHER = {"en": "their purchase history", "zh-TW": "購買紀錄", "zh-CN": "购买记录"}


def top_drivers(contributions: pd.DataFrame, values: pd.DataFrame, top: int = TOP) -> pd.Series:
    """Each row's ``top`` features that raise the score most, as codes.

    Parameters
    ----------
    contributions : pandas.DataFrame
        One column per feature (plus ``baseline``, ignored): each feature's contribution
        to each row's log-odds.
    values : pandas.DataFrame
        The same rows' feature values (numbers, or categories).
    top : int, default 2
        Drivers per row.

    Returns
    -------
    pandas.Series
        A tuple of codes per row (same index), strongest first; only features with a
        positive contribution, so a row the model finds unremarkable may have none.
    """
    features = [c for c in contributions.columns if c != "baseline"]
    push = contributions[features].to_numpy(dtype=float)
    order = np.argsort(-push, axis=1, kind="stable")[:, :top]
    words = np.empty((len(values), len(features)), dtype=object)
    for j, feature in enumerate(features):  # a loop over the model's features, not rows
        column = values[feature]
        if not pd.api.types.is_numeric_dtype(column.dtype):  # a category or text: its value
            words[:, j] = feature + "_" + column.astype(str).map(_slug).to_numpy()
        else:
            x = column.to_numpy(dtype=float, na_value=np.nan)
            median = np.nanmedian(x) if np.isfinite(x).any() else np.nan
            words[:, j] = np.where(x > median, feature + "_high", feature + "_low")
    rows = np.arange(len(values))[:, None]
    chosen = np.where(push[rows, order] > 0, words[rows, order], None)
    return pd.Series(
        [tuple(c for c in row if c is not None) for row in chosen.tolist()], index=values.index
    )


def phrase(code: str, locale: str) -> str:
    """The driver ``code`` in words, in ``locale`` (en, zh-TW or zh-CN)."""
    feature, _, direction = code.rpartition("_")
    for pattern, phrases in FAMILIES.values():
        if direction in phrases and re.search(pattern, feature):
            return phrases[direction].get(locale, phrases[direction]["en"])
    return OTHER.get(locale, OTHER["en"])


def _slug(value: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", value.lower()).strip("_")
