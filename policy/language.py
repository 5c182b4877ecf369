"""What a chat message says: its sentiment, its intent, and whether the customer is frustrated.

English and Chinese (zh-TW and zh-CN; Traditional text is converted to Simplified first with
OpenCC, so one set of Chinese cues serves both):

- **Sentiment** from an analyser made for the language: VADER for English (its compound
  score in [-1, 1], with negation and intensifiers: "no complaints" is positive), SnowNLP
  for Chinese (trained on product reviews; its probability of a positive text p, as 2p - 1).
  Both ship their lexicons and models in the package: nothing is downloaded.
- **Intent**: ``complaint``, ``reorder`` or ``order_status`` from phrase cues per language
  (:data:`CUES`), in that order of precedence (a complaint about a late parcel is a
  complaint). A complaint cue right after a negator does not count ("I have no complaints",
  "not disappointed at all", 「沒有什麼不滿意」); an order-status cue needs a question
  ("Everything arrived on time" asks nothing).
- **Frustrated**: a complaint, or a sentiment at or below :data:`NEGATIVE` for English (or the
  chatbot's own sentiment for the message, when it sends one: the lower counts). SnowNLP
  reads short requests as negative ("我想再訂一次墨水" scores 0.04), so for Chinese only a
  text it scores at or below :data:`ZH_NEGATIVE` with no other intent counts by sentiment
  alone.

The held-out messages in ``tests/policy/data/messages.csv`` (150: en, zh-TW, zh-CN) measure
it; the documentation (how-to/serving) has the figures.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

NEGATIVE = -0.5  # an English compound score at or below this is frustrated
ZH_NEGATIVE = -0.9  # a Chinese one (2p - 1), with no other intent
_CJK = re.compile(r"[\u3400-\u9fff]")

#: Cues per language and intent: (negatable, not negatable), as regular expressions.
CUES = {
    "en": {
        "complaint": (
            r"frustrat\w*|annoy\w*|angry|furious|upset|disappoint\w*|unhappy|outraged|"
            r"terrible|awful|horrible|worst|useless|ridiculous|unacceptable|pathetic|rubbish|"
            r"complain\w*|a joke|a mess",
            r"fed up|sick of|tired of|nobody (?:ever )?(?:answers|replies|responds|cares|gets? "
            r"back)|no one (?:ever )?(?:answers|replies|responds|cares|gets? back)|"
            r"(?:still|never) (?:no|not|waiting|arrived|came|got|received|hasn't|haven't)|"
            r"never ordering|broken|damaged|torn|defective|wrong item|lost again|"
            r"charged (?:me )?twice|refund|stopped working|keeps crashing|can't find|"
            r"(?:speak|talk) to a manager|on hold for|thanks for nothing|"
            r"just what i needed|oh (?:great|wonderful|perfect|brilliant)|yeah,? (?:sure|right)|"
            r"another (?:day|week|month) without|it's been \w+ (?:days|weeks)",
        ),
        "reorder": (
            None,
            r"re-?order|order (?:another|more|again)|buy (?:the same|it again|more)|"
            r"(?:get|send|buy) (?:me )?(?:another|the same)|the same (?:ones?|as last time) "
            r"again|another (?:box|pack|bag|one)|running low|ran out|run out|restock|refill",
        ),
        "order_status": (
            None,
            r"where(?:'s| is) my (?:order|package|parcel)|track(?:ing)?|shipped|dispatched|"
            r"deliver(?:ed|y)|arriv(?:e|al)|order status|on (?:its|the) way",
        ),
    },
    "zh": {
        "complaint": (
            r"烦|生气|气死|火大|不爽|失望|受够|崩溃|无语|不满|讨厌|太差|很差|真差|差劲|烂|"
            r"糟糕|垃圾|离谱|扯|夸张|坑人|骗",
            r"一直没|还没收到|没收到|还没到账|没人接|没人回|不回|没回|没有下文|没下文|坏的|"
            r"坏了|破的|破了|寄错|发错|闪退|两次钱|扣了我两次|扣款两次|退款|晚了|"
            r"等了.{0,3}(?:周|星期|礼拜|天)|等很久|到底|投诉|客诉|再也不买|不会再买|差很多|"
            r"差太多",
        ),
        "reorder": (None, r"再.{0,3}[订买]|再来一|补货|回购|续订|同款|一样的"),
        "order_status": (
            None,
            r"订单.{0,4}(?:到|哪)|物流|到哪|发货|出货|寄出|配送|快递|几天.{0,3}到|"
            r"什么时候.{0,4}到",
        ),
    },
}
_NEGATORS = {
    "en": re.compile(r"\b(?:no|not|never|without|any)\b|n't\b", re.IGNORECASE),
    "zh": re.compile(r"[不没无别]"),
}
_NEGATION_WINDOW = {"en": 20, "zh": 4}  # characters before a cue
_QUESTION = {
    "en": re.compile(r"\?|\b(?:where|when|status|track|check|know)\b", re.IGNORECASE),
    "zh": re.compile(r"[?？吗嗎]|请问|查|确认|什么时候|几天"),
}


@dataclass(frozen=True)
class Reading:
    """What one message says."""

    language: str  # "en" or "zh"
    sentiment: float  # [-1, 1]
    intent: str | None  # "complaint", "reorder", "order_status" or None
    frustrated: bool


def read_message(message: str, sentiment: float | None = None) -> Reading:
    """Sentiment, intent and frustration of ``message`` (any of en, zh-TW, zh-CN), with the
    chatbot's own ``sentiment`` for it when it sends one (the lower counts)."""
    language = "zh" if _CJK.search(message) else "en"
    text = _simplified(message) if language == "zh" else message.lower()
    score = _zh_sentiment(text) if language == "zh" else _en_sentiment(message)
    intent = next((name for name in CUES[language] if _says(text, language, name)), None)
    # SnowNLP reads short requests as negative: sentiment alone counts for English only,
    # and for Chinese only when very low and the message asks for nothing else
    low = score <= NEGATIVE if language == "en" else intent is None and score <= ZH_NEGATIVE
    if sentiment is not None:
        score = min(score, sentiment)
        low = low or sentiment <= NEGATIVE
    return Reading(language, round(score, 4), intent, intent == "complaint" or low)


def _says(text: str, language: str, intent: str) -> bool:
    negatable, plain = CUES[language][intent]
    if plain and re.search(plain, text):
        found = True
    else:
        window = _NEGATION_WINDOW[language]
        found = negatable is not None and any(
            not _NEGATORS[language].search(text[max(0, m.start() - window) : m.start()])
            for m in re.finditer(negatable, text)
        )
    if found and intent == "order_status":
        return bool(_QUESTION[language].search(text))
    return found


@functools.cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@functools.cache
def _converter():
    import opencc

    return opencc.OpenCC("t2s")


def _simplified(text: str) -> str:
    return _converter().convert(text)


def _en_sentiment(text: str) -> float:
    return float(_vader().polarity_scores(text)["compound"])


def _zh_sentiment(text: str) -> float:
    from snownlp import SnowNLP

    return 2.0 * float(SnowNLP(text).sentiments) - 1.0


def warm() -> None:
    """Load the analysers now (SnowNLP takes seconds), not in a customer's first request."""
    read_message("Thanks!")
    read_message("謝謝")
