"""Pseudonyms, the suppression list, and the rows that belong to one data subject.

**Pseudonyms.** Wherever nextbest records a customer outside the contract data and the
feature tables -- the service's suggestion, feedback and event stores, the audit log, logs --
it writes ``pseudonym(customer_id)``: an HMAC-SHA256 of the id under a secret key from
``NEXTBEST_PSEUDONYM_KEY`` (at least 16 characters, kept apart from the data). Without the
key a pseudonym cannot be tied back to a person, and with it the same customer always gets
the same pseudonym, so records stay joinable.

*Rotating the key*: put the new key in ``NEXTBEST_PSEUDONYM_KEY`` and the old one(s) in
``NEXTBEST_PSEUDONYM_PREVIOUS_KEYS`` (comma-separated). New records use the new key;
look-ups (export, erasure, ``nextbest audit query``) and the suppression list match a
customer under every listed key, so nothing recorded before the rotation is orphaned.
Drop an old key once the records written under it have aged out of retention.

**Rows kept for replay.** The service keeps each row it accepted online (an order, a
consent, an identity) so it can apply it again on top of every new snapshot: encrypted
with AES-GCM under a key derived from the pseudonym key (:func:`lock_row`,
:func:`open_row`), beside the sealed copy, and erased with it.

**Suppression list.** An erased customer's ids (customer id and every identity value) are
kept as HMACs under a *different* derivation from the pseudonym (so the list never holds
a pseudonym that appears in any record), in ``NEXTBEST_SUPPRESSION`` (default
``data/suppression.json``). Loading a contract folder drops every row of a suppressed
customer, so a later export from the CDP, an import or a retrain cannot bring them back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import pandas as pd

from cdp.errors import BadInputError

KEY_ENV = "NEXTBEST_PSEUDONYM_KEY"
PREVIOUS_ENV = "NEXTBEST_PSEUDONYM_PREVIOUS_KEYS"
SUPPRESSION_ENV = "NEXTBEST_SUPPRESSION"
DEFAULT_SUPPRESSION = Path("data/suppression.json")


def keys(env: Mapping[str, str] | None = None) -> list[bytes]:
    """The current pseudonym key first, then the previous ones; an error without a key."""
    env = os.environ if env is None else env
    current = env.get(KEY_ENV, "")
    if len(current) < 16:
        raise BadInputError(
            f"{KEY_ENV}: set a secret of at least 16 characters (it keys the pseudonyms of"
            " customer ids in records and logs)"
        )
    previous = [k.strip() for k in env.get(PREVIOUS_ENV, "").split(",") if k.strip()]
    return [k.encode() for k in (current, *previous)]


def _row_key(key: bytes) -> bytes:
    """The AES-256 key of :func:`lock_row`, derived from (never equal to) a pseudonym key."""
    return hmac.new(key, b"nextbest:replay-rows", hashlib.sha256).digest()


def lock_row(row: dict, key: bytes | None = None) -> str:
    """``row`` encrypted (AES-GCM, random nonce) for the service's replay store."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = key or keys()[0]
    nonce = os.urandom(12)
    sealed = AESGCM(_row_key(key)).encrypt(nonce, json.dumps(row).encode(), None)
    return base64.b64encode(nonce + sealed).decode()


def open_row(text: str, keys_: list[bytes] | None = None) -> dict:
    """The row :func:`lock_row` encrypted, under the current or a previous key."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.b64decode(text)
    for key in keys_ or keys():
        try:
            return json.loads(AESGCM(_row_key(key)).decrypt(raw[:12], raw[12:], None))
        except InvalidTag:
            continue
    raise BadInputError("a stored online row was encrypted under none of the pseudonym keys")


def _mac(key: bytes, label: str, value: str) -> str:
    return hmac.new(key, f"{label}:{value}".encode(), hashlib.sha256).hexdigest()


def pseudonym(customer_id: str, key: bytes | None = None) -> str:
    """The customer's pseudonym under ``key`` (default: the current key): ``ps_`` and 24
    hex digits of HMAC-SHA256."""
    return "ps_" + _mac(key or keys()[0], "customer", customer_id)[:24]


def pseudonyms(customer_id: str) -> set[str]:
    """The customer's pseudonym under every current and previous key."""
    return {pseudonym(customer_id, key) for key in keys()}


def identity_token(value: str, key: bytes | None = None) -> str:
    """A keyed token of an identity value or anonymous id (cookie, device, messenger id):
    ``id_`` and 24 hex digits of HMAC-SHA256, a derivation of its own."""
    return "id_" + _mac(key or keys()[0], "identity", value)[:24]


def identity_tokens(*values: str) -> set[str]:
    """The tokens of ``values`` under every current and previous key."""
    return {identity_token(value, key) for key in keys() for value in values}


#: Fields of contract rows that identify a person, and how each is replaced when a row is
#: kept by the service (:func:`sealed_row`).
IDENTIFYING = {"customer_id": "pseudonym", "anonymous_id": "identity", "id_value": "identity"}


def sealed_row(row: dict, key: bytes | None = None) -> tuple[dict, str | None]:
    """A contract row as the service may keep it: ``customer_id`` as its pseudonym,
    ``anonymous_id`` and ``id_value`` as identity tokens; and the anonymous id's token (to
    find an anonymous event again when its cookie turns out to be someone's)."""
    key = key or keys()[0]
    out = dict(row)
    for name, kind in IDENTIFYING.items():
        if out.get(name):
            value = str(out[name])
            out[name] = pseudonym(value, key) if kind == "pseudonym" else identity_token(value, key)
    return out, out.get("anonymous_id") or None


def pseudonymise(customer_ids: pd.Series, key: bytes | None = None) -> pd.Series:
    """``pseudonym`` of each id (``None`` stays ``None``)."""
    key = key or keys()[0]
    return customer_ids.map(lambda c: None if pd.isna(c) else pseudonym(str(c), key))


def _token(key: bytes, value: str) -> str:
    return _mac(key, "suppressed", value)


def suppression_path(env: Mapping[str, str] | None = None) -> Path:
    """The suppression list's file: ``NEXTBEST_SUPPRESSION``, else ``data/suppression.json``."""
    env = os.environ if env is None else env
    return Path(env.get(SUPPRESSION_ENV) or DEFAULT_SUPPRESSION)


def load_suppression(path: Path | None = None) -> set[str]:
    """The tokens of the suppression list (empty if there is none)."""
    path = path or suppression_path()
    if not path.is_file():
        return set()
    try:
        return set(json.loads(path.read_text())["tokens"])
    except (ValueError, KeyError, TypeError) as error:
        raise BadInputError(f"{path}: not a suppression list ({error})") from None


def suppress(values: list[str], path: Path | None = None) -> int:
    """Add ``values`` (a customer id and identity values) to the suppression list under the
    current key; written through a temporary file. Returns the list's size."""
    path = path or suppression_path()
    tokens = load_suppression(path) | {_token(keys()[0], v) for v in values}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"tokens": sorted(tokens)}, indent=0) + "\n")
    tmp.replace(path)
    return len(tokens)


def suppressed(values: pd.Series, tokens: set[str]) -> pd.Series:
    """Which of ``values`` are on the list (under any current or previous key)."""
    if not tokens or values.empty:
        return pd.Series(False, index=values.index)
    unique = values.dropna().astype(str).unique()
    hit = {v for v in unique for key in keys() if _token(key, v) in tokens}
    return values.isin(hit)


#: The columns that identify a data subject, per contract table.
SUBJECT_COLUMNS = {
    "customers": ("customer_id",),
    "identities": ("customer_id", "id_value"),
    "consents": ("customer_id",),
    "orders": ("customer_id",),
    "events": ("customer_id", "anonymous_id"),
}


def drop_suppressed(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``frames`` without any row whose subject columns hold a suppressed value."""
    tokens = load_suppression()
    if not tokens:
        return frames
    out = dict(frames)
    for name, columns in SUBJECT_COLUMNS.items():
        frame = frames.get(name)
        if frame is None or frame.empty:
            continue
        hit = pd.Series(False, index=frame.index)
        for column in columns:
            if column in frame.columns:
                hit |= suppressed(frame[column], tokens)
        out[name] = frame[~hit.to_numpy()]
    return out


def subject_rows(frames: dict[str, pd.DataFrame], customer_id: str) -> dict[str, pd.DataFrame]:
    """Every row of ``frames`` (contract tables) about ``customer_id``: their own rows, and
    anonymous events recorded under one of their identity values."""
    identities = frames.get("identities")
    values = set()
    if identities is not None and not identities.empty:
        values = set(identities.loc[identities["customer_id"] == customer_id, "id_value"])
    out = {}
    for name, frame in frames.items():
        if frame is None or "customer_id" not in frame.columns:
            continue
        hit = frame["customer_id"] == customer_id
        if name == "events" and "anonymous_id" in frame.columns:
            hit |= frame["anonymous_id"].isin(values)
        out[name] = frame[hit.fillna(False).to_numpy(dtype=bool)]
    return out


def consent_in_force(
    consents: pd.DataFrame, purpose: str, as_of: datetime | pd.Timestamp
) -> pd.Index:
    """Customer ids whose latest ``purpose`` consent recorded at or before ``as_of`` is a
    grant (no record, or a withdrawal, means no consent)."""
    rows = consents[(consents["purpose"] == purpose) & (consents["recorded_at"] <= as_of)]
    latest = rows.sort_values("recorded_at", kind="stable").drop_duplicates(
        "customer_id", keep="last"
    )
    return pd.Index(latest.loc[latest["granted"].astype(bool), "customer_id"])
