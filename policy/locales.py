"""The locale of an answer: the supported locale closest to what the chatbot asked for.

Chatbots send what their platform gives them (``en-US``, ``zh_TW``, ``zh-Hant``, ``zh-HK``,
``zh-Hans``, ``zh-SG``). BCP 47 matching (``langcodes``, CLDR's language distances) maps each
to the closest supported locale: ``zh-Hant`` / ``zh-HK`` / ``zh-MO`` -> ``zh-TW``, ``zh-Hans`` /
``zh-SG`` -> ``zh-CN``, any ``en-*`` -> ``en``. A tag that matches none of them falls back to
the customer's own locale (matched the same way), then to ``en``.
"""

from __future__ import annotations

import functools

import langcodes

SUPPORTED = ("en", "zh-TW", "zh-CN")
DEFAULT = "en"
#: How far (CLDR language distance) a tag may be from a supported locale to match it; 25
#: admits script and region variants of the same language, never another language.
MAX_DISTANCE = 25


def standard_tag(tag: str) -> str:
    """``tag`` as a standard BCP 47 tag (``zh_TW`` -> ``zh-TW``); ``ValueError`` if it is not
    a well-formed language tag."""
    try:
        return langcodes.standardize_tag(tag.replace("_", "-"))
    except (langcodes.LanguageTagError, ValueError) as error:
        raise ValueError(f"{tag!r} is not a BCP 47 language tag: {error}") from None


@functools.lru_cache(maxsize=1024)
def supported_match(tag: str | None) -> str | None:
    """The supported locale closest to ``tag``, or ``None`` when none is close enough."""
    if not tag:
        return None
    try:
        standard = standard_tag(tag)
    except ValueError:
        return None
    return langcodes.closest_supported_match(standard, list(SUPPORTED), MAX_DISTANCE)


def answer_locale(requested: str | None, customer: str | None) -> str:
    """The locale to answer in: the closest match of the requested tag, else of the
    customer's locale, else ``en``."""
    return supported_match(requested) or supported_match(customer) or DEFAULT
