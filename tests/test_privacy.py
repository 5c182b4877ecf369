"""Pseudonyms, key rotation and the suppression list, on tiny hand-built data."""

from __future__ import annotations

import pytest

from cdp import privacy
from cdp.errors import BadInputError
from cdp.validation import load_contract
from conftest import tiny_tables, write_folder

KEY = "a-secret-key-for-the-tests-0001"


@pytest.fixture
def keyed(monkeypatch, tmp_path):
    monkeypatch.setenv(privacy.KEY_ENV, KEY)
    monkeypatch.setenv(privacy.SUPPRESSION_ENV, str(tmp_path / "suppression.json"))
    monkeypatch.delenv(privacy.PREVIOUS_ENV, raising=False)
    return tmp_path


def test_a_pseudonym_is_stable_keyed_and_not_the_id(keyed, monkeypatch):
    a = privacy.pseudonym("00001")
    assert a == privacy.pseudonym("00001") and a.startswith("ps_") and len(a) == 27
    assert "00001" not in a and a != privacy.pseudonym("00002")
    monkeypatch.setenv(privacy.KEY_ENV, "another-secret-key-0000002")
    assert privacy.pseudonym("00001") != a  # without the key, no link to the person


def test_rotation_keeps_old_pseudonyms_findable(keyed, monkeypatch):
    old = privacy.pseudonym("00001")
    monkeypatch.setenv(privacy.KEY_ENV, "the-new-secret-key-000000003")
    monkeypatch.setenv(privacy.PREVIOUS_ENV, KEY)
    assert old in privacy.pseudonyms("00001") and privacy.pseudonym("00001") != old


def test_rows_kept_for_replay_are_encrypted_and_open_under_a_rotated_key(keyed, monkeypatch):
    row = {"customer_id": "00001", "purpose": "marketing", "granted": False}
    locked = privacy.lock_row(row)
    assert "00001" not in locked and locked != privacy.lock_row(row)  # a fresh nonce each time
    assert privacy.open_row(locked) == row
    monkeypatch.setenv(privacy.KEY_ENV, "the-new-secret-key-000000003")
    with pytest.raises(BadInputError, match="none of the pseudonym keys"):
        privacy.open_row(locked)
    monkeypatch.setenv(privacy.PREVIOUS_ENV, KEY)
    assert privacy.open_row(locked) == row


def test_no_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    with pytest.raises(BadInputError, match="NEXTBEST_PSEUDONYM_KEY"):
        privacy.pseudonym("00001")


def test_a_suppressed_customer_never_comes_back_from_a_contract_folder(keyed, monkeypatch):
    folder = write_folder(tiny_tables(), keyed / "data")
    before = load_contract(folder)
    assert "00001" in set(before.customers["customer_id"])
    privacy.suppress(["00001", "ck-1", "psid-1"])
    after = load_contract(folder)
    assert "00001" not in set(after.customers["customer_id"])
    for name in ("identities", "consents", "orders"):
        assert "00001" not in set(getattr(after, name)["customer_id"])
    assert "ck-1" not in set(after.events["anonymous_id"].dropna())  # their anonymous events
    assert len(after.customers) == len(before.customers) - 1
    assert "00001" not in (keyed / "suppression.json").read_text()  # hashed, not listed

    # after a key rotation the list still matches
    monkeypatch.setenv(privacy.PREVIOUS_ENV, KEY)
    monkeypatch.setenv(privacy.KEY_ENV, "the-new-secret-key-000000003")
    assert "00001" not in set(load_contract(folder).customers["customer_id"])


def test_a_suppressed_customer_is_left_out_of_every_build_and_validation(keyed, small_world_dir):
    """Reading the folder directly (a build in partitions, the scan path) leaves an erased
    customer out as the loader does: no customer row, no pair, no validation error for
    their orphaned rows."""
    from cdp.validation import validate_in_partitions
    from conftest import AS_OF
    from features.build import build_features
    from features.partitions import build_partitions

    pairs = build_features(small_world_dir, as_of=AS_OF).pairs
    who = pairs["customer_id"].iloc[0]
    privacy.suppress([who])
    loaded = build_features(load_contract(small_world_dir), as_of=AS_OF)
    for built in (
        build_features(small_world_dir, as_of=AS_OF),
        *build_partitions(small_world_dir, as_of=AS_OF, partitions=2),
    ):
        assert who not in set(built.customers["customer_id"])
        assert who not in set(built.pairs["customer_id"])
    assert build_features(small_world_dir, as_of=AS_OF).population == loaded.population
    assert validate_in_partitions(small_world_dir, 3).ok
