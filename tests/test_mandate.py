"""Mandates: issuing, strict parsing, verification, revocation."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_client._exceptions import (
    MandateAgentMismatch,
    MandateError,
    MandateExpired,
    MandateNotYetValid,
    MandateOwnerUntrusted,
    MandateRevoked,
    MandateSignatureInvalid,
    PaymentError,
    RevocationsInvalid,
)
from mpp_client.identity import AgentKey, OwnerKey, verify_signature
from mpp_client.mandate import MANDATE_TYPE, Mandate, Revocations, load_mandate
from mpp_client.protocol import b64url_decode, b64url_encode, canonical_json

OWNER_SEED = bytes(range(32))
AGENT_SEED = bytes(range(32, 64))
OWNER = OwnerKey.from_seed(OWNER_SEED)
AGENT = AgentKey.from_seed(AGENT_SEED)
STRANGER = OwnerKey.from_seed(bytes(range(64, 96)))
OTHER_AGENT = AgentKey.from_seed(bytes(range(96, 128)))
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
START = NOW - timedelta(hours=1)
END = NOW + timedelta(days=30)
POLICY = {"max_per_call": "0.50 USD", "budget": "5.00 USD", "payees": ["a.test", "b.test"]}
NO_SKEW = timedelta(0)


def issue(**kwargs: Any) -> Mandate:
    arguments: dict[str, Any] = {
        "expires_at": END,
        "not_before": START,
        "issued_at": START,
        "id": "m-1",
    }
    arguments.update(kwargs)
    return Mandate.issue(OWNER, AGENT.did, POLICY, **arguments)


def verify(mandate: Mandate, **kwargs: Any) -> None:
    arguments: dict[str, Any] = {"owner_keys": [OWNER.did], "agent": AGENT, "now": NOW}
    arguments.update(kwargs)
    mandate.verify(**arguments)


def altered(mandate: Mandate, **changes: Any) -> Mandate:
    return Mandate.from_dict({**mandate.to_dict(), **changes})


def assert_no_secrets(exc: BaseException, mandate: Mandate | None = None) -> None:
    text = f"{exc} {exc!r}"
    for seed in (OWNER_SEED, AGENT_SEED):
        assert seed.hex() not in text
        assert b64url_encode(seed) not in text
    if mandate is not None:
        assert mandate.signature not in text


@pytest.fixture
def mandate() -> Mandate:
    return issue()


# -- issue and verify ---------------------------------------------------------


def test_issue_and_verify(mandate: Mandate) -> None:
    verify(mandate)
    verify(mandate, agent=AGENT.did)
    assert mandate.id == "m-1"
    assert mandate.owner == OWNER.did
    assert mandate.agent == AGENT.did
    assert mandate.policy == POLICY
    assert mandate.issued_at == START
    assert mandate.not_before == START
    assert mandate.expires_at == END


def test_signed_body_is_canonical_json_with_a_type_tag(mandate: Mandate) -> None:
    body = mandate.to_dict()
    signature = body.pop("signature")
    assert body["type"] == MANDATE_TYPE
    assert body["expires_at"] == "2026-12-21T12:00:00Z"
    assert verify_signature(OWNER.did, canonical_json(body), b64url_decode(signature))


def test_defaults() -> None:
    mandate = Mandate.issue(OWNER, AGENT.did, {}, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert mandate.not_before == mandate.issued_at
    assert mandate.issued_at.microsecond == 0
    assert abs(mandate.issued_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert len(mandate.id) >= 22
    other = Mandate.issue(OWNER, AGENT.did, {}, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert other.id != mandate.id


def test_times_are_stored_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    mandate = issue(expires_at=datetime(2026, 12, 1, 14, 0, tzinfo=plus_two))
    assert mandate.to_dict()["expires_at"] == "2026-12-01T12:00:00Z"
    assert mandate.expires_at == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_policy_is_a_copy(mandate: Mandate) -> None:
    mandate.policy["budget"] = "1000000 USD"
    mandate.policy["payees"].append("evil.test")
    assert mandate.policy == POLICY
    verify(mandate)


def test_policy_given_to_issue_is_copied() -> None:
    policy: dict[str, Any] = {"payees": ["a.test"]}
    mandate = Mandate.issue(OWNER, AGENT.did, policy, expires_at=END, not_before=START)
    policy["payees"].append("evil.test")
    assert mandate.policy == {"payees": ["a.test"]}
    verify(mandate)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"expires_at": datetime(2026, 12, 1)}, ValueError),  # naive
        ({"not_before": datetime(2026, 11, 1)}, ValueError),
        ({"issued_at": datetime(2026, 11, 1)}, ValueError),
        ({"expires_at": START}, ValueError),
        ({"expires_at": START - timedelta(seconds=1)}, ValueError),
        ({"id": ""}, ValueError),
        ({"id": "has space"}, ValueError),
        ({"id": "x" * 129}, ValueError),
    ],
)
def test_issue_argument_checks(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        issue(**kwargs)


def test_issue_refuses_bad_agent_owner_and_policy() -> None:
    with pytest.raises(ValueError, match="did:key"):
        Mandate.issue(OWNER, "agent-7", POLICY, expires_at=END)
    with pytest.raises(TypeError, match="OwnerKey"):
        Mandate.issue(AGENT, AGENT.did, POLICY, expires_at=END)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Mandate.issue(OWNER, AGENT.did, {"payees": {"a.test"}}, expires_at=END)
    with pytest.raises(TypeError):
        Mandate.issue(OWNER, AGENT.did, [("k", "v")], expires_at=END)  # type: ignore[arg-type]


def test_numbers_survive_a_round_trip_exactly() -> None:
    policy = {"count": 10**30, "ratio": 1.0, "tuple": (1, 2)}
    mandate = Mandate.issue(OWNER, AGENT.did, policy, expires_at=END, not_before=START)
    assert mandate.policy == {"count": 10**30, "ratio": 1, "tuple": [1, 2]}
    assert Mandate.from_json(mandate.to_json()) == mandate
    verify(Mandate.from_json(mandate.to_json()))


# -- the validity window ------------------------------------------------------


def test_valid_from_not_before_inclusive(mandate: Mandate) -> None:
    verify(mandate, now=START, clock_skew=NO_SKEW)
    with pytest.raises(MandateNotYetValid, match="not valid before 2026-11-21T11:00:00Z") as info:
        verify(mandate, now=START - timedelta(microseconds=1), clock_skew=NO_SKEW)
    assert_no_secrets(info.value, mandate)


def test_expires_at_is_exclusive(mandate: Mandate) -> None:
    verify(mandate, now=END - timedelta(microseconds=1), clock_skew=NO_SKEW)
    with pytest.raises(MandateExpired, match="expired at 2026-12-21T12:00:00Z") as info:
        verify(mandate, now=END, clock_skew=NO_SKEW)
    assert_no_secrets(info.value, mandate)


def test_clock_skew_widens_both_ends(mandate: Mandate) -> None:
    verify(mandate, now=START - timedelta(seconds=5))
    verify(mandate, now=END + timedelta(seconds=4, microseconds=999999))
    with pytest.raises(MandateNotYetValid):
        verify(mandate, now=START - timedelta(seconds=5, microseconds=1))
    with pytest.raises(MandateExpired):
        verify(mandate, now=END + timedelta(seconds=5))
    with pytest.raises(MandateExpired):
        verify(mandate, now=END + timedelta(minutes=1), clock_skew=timedelta(seconds=30))


def test_verify_argument_checks(mandate: Mandate) -> None:
    with pytest.raises(ValueError, match="aware"):
        verify(mandate, now=datetime(2026, 11, 21, 12))
    with pytest.raises(ValueError, match="negative"):
        verify(mandate, clock_skew=timedelta(seconds=-1))
    with pytest.raises(TypeError, match="wrap one in a list"):
        verify(mandate, owner_keys=OWNER.did)
    with pytest.raises(TypeError):
        verify(mandate, agent=None)


# -- signatures and trust -----------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"policy": {**POLICY, "budget": "500.00 USD"}},
        {"policy": {**POLICY, "payees": ["a.test", "b.test", "evil.test"]}},
        {"policy": {}},
        {"expires_at": "2036-12-21T12:00:00Z"},
        {"not_before": "2026-11-21T10:00:00Z"},
        {"issued_at": "2026-11-21T10:00:00Z"},
        {"id": "m-2"},
        # Same instant, different string: signatures cover the bytes as written.
        {"expires_at": "2026-12-21T12:00:00+00:00"},
    ],
)
def test_tampered_body_is_refused(mandate: Mandate, changes: dict[str, Any]) -> None:
    tampered = altered(mandate, **changes)
    with pytest.raises(MandateSignatureInvalid, match="does not match its signature") as info:
        verify(tampered)
    assert not isinstance(info.value, MandateOwnerUntrusted)
    assert_no_secrets(info.value, mandate)


def test_tampered_agent_is_refused(mandate: Mandate) -> None:
    tampered = altered(mandate, agent=OTHER_AGENT.did)
    with pytest.raises(MandateSignatureInvalid, match="does not match its signature"):
        verify(tampered, agent=OTHER_AGENT)


def test_tampered_owner_is_refused(mandate: Mandate) -> None:
    tampered = altered(mandate, owner=STRANGER.did)
    with pytest.raises(MandateSignatureInvalid, match="does not match its signature"):
        verify(tampered, owner_keys=[OWNER.did, STRANGER.did])


def test_tampered_signature_is_refused(mandate: Mandate) -> None:
    signature = mandate.signature
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    with pytest.raises(MandateSignatureInvalid):
        verify(altered(mandate, signature=flipped))


def test_signature_by_another_key_is_refused() -> None:
    body = issue().to_dict()
    del body["signature"]
    forged = Mandate(body, b64url_encode(STRANGER.sign(canonical_json(body))))
    with pytest.raises(MandateSignatureInvalid, match="does not match its signature"):
        verify(forged)


def test_untrusted_owner(mandate: Mandate) -> None:
    with pytest.raises(MandateOwnerUntrusted, match="not a trusted owner key") as info:
        verify(mandate, owner_keys=[STRANGER.did])
    assert isinstance(info.value, MandateSignatureInvalid)
    assert isinstance(info.value, PaymentError)
    assert_no_secrets(info.value, mandate)
    with pytest.raises(MandateOwnerUntrusted):
        verify(mandate, owner_keys=[])
    self_signed = Mandate.issue(STRANGER, AGENT.did, POLICY, expires_at=END, not_before=START)
    with pytest.raises(MandateOwnerUntrusted):
        verify(self_signed)
    verify(mandate, owner_keys={STRANGER.did, OWNER.did})


def test_agent_mismatch(mandate: Mandate) -> None:
    with pytest.raises(MandateAgentMismatch, match="issued to agent") as info:
        verify(mandate, agent=OTHER_AGENT)
    assert OTHER_AGENT.did in str(info.value)
    assert_no_secrets(info.value, mandate)
    with pytest.raises(MandateAgentMismatch):
        verify(mandate, agent=OTHER_AGENT.did)


def test_externally_signed_non_canonical_times_verify() -> None:
    """Another implementation may write offsets; the signature covers its strings."""
    body = {
        "type": MANDATE_TYPE,
        "id": "ext-1",
        "owner": OWNER.did,
        "agent": AGENT.did,
        "policy": {"max_per_call": "1 USD"},
        "issued_at": "2026-11-21T13:00:00+02:00",
        "not_before": "2026-11-21t11:00:00.000z",
        "expires_at": "2026-12-21T14:00:00+02:00",
    }
    text = json.dumps({**body, "signature": b64url_encode(OWNER.sign(canonical_json(body)))})
    mandate = Mandate.from_json(text)
    verify(mandate)
    assert mandate.expires_at == END
    assert mandate.not_before == START


# -- revocation ---------------------------------------------------------------


def test_revoked_by_signed_list(mandate: Mandate) -> None:
    revocations = Revocations.issue(OWNER, ["m-0", mandate.id], issued_at=NOW)
    with pytest.raises(MandateRevoked, match="'m-1' was revoked") as info:
        verify(mandate, revoked=revocations)
    assert_no_secrets(info.value, mandate)
    verify(mandate, revoked=Revocations.issue(OWNER, ["m-0"]))
    verify(mandate, revoked=Revocations.issue(OWNER, []))


def test_revoked_by_plain_ids(mandate: Mandate) -> None:
    with pytest.raises(MandateRevoked):
        verify(mandate, revoked=["m-1"])
    with pytest.raises(MandateRevoked):
        verify(mandate, revoked={"m-1"})
    verify(mandate, revoked=["m-10"])
    with pytest.raises(TypeError):
        verify(mandate, revoked="m-1")


def test_revocation_is_checked_after_authenticity(mandate: Mandate) -> None:
    with pytest.raises(MandateOwnerUntrusted):
        verify(mandate, owner_keys=[STRANGER.did], revoked=["m-1"])


def test_forged_revocation_list_is_refused(mandate: Mandate) -> None:
    forged = Revocations.issue(STRANGER, [])
    with pytest.raises(RevocationsInvalid, match="not a trusted owner key") as info:
        verify(mandate, revoked=forged)
    assert_no_secrets(info.value)
    assert isinstance(info.value, MandateError)


def test_emptied_revocation_list_is_refused(mandate: Mandate) -> None:
    genuine = Revocations.issue(OWNER, [mandate.id], issued_at=NOW)
    emptied = Revocations.from_dict({**genuine.to_dict(), "revoked": []})
    with pytest.raises(RevocationsInvalid, match="does not match its signature"):
        verify(mandate, revoked=emptied)


def test_revocation_list_from_another_trusted_owner_counts(mandate: Mandate) -> None:
    revocations = Revocations.issue(STRANGER, [mandate.id])
    with pytest.raises(MandateRevoked):
        verify(mandate, owner_keys=[OWNER.did, STRANGER.did], revoked=revocations)


def test_revocations_behave_as_a_set() -> None:
    revocations = Revocations.issue(OWNER, ["b", "a", "b"], issued_at=NOW)
    assert revocations.ids == frozenset({"a", "b"})
    assert list(revocations) == ["a", "b"]
    assert len(revocations) == 2
    assert "a" in revocations
    assert "c" not in revocations
    assert revocations.owner == OWNER.did
    assert revocations.issued_at == NOW


def test_revocations_max_age() -> None:
    revocations = Revocations.issue(OWNER, ["a"], issued_at=NOW)
    revocations.verify(
        owner_keys=[OWNER.did], now=NOW + timedelta(hours=1), max_age=timedelta(hours=1)
    )
    with pytest.raises(RevocationsInvalid, match="older than"):
        revocations.verify(
            owner_keys=[OWNER.did], now=NOW + timedelta(hours=2), max_age=timedelta(hours=1)
        )


def test_revocations_round_trip(tmp_path: Path) -> None:
    revocations = Revocations.issue(OWNER, ["a", "b"], issued_at=NOW)
    assert Revocations.from_json(revocations.to_json()) == revocations
    path = tmp_path / "revoked.json"
    revocations.save(path)
    loaded = Revocations.from_file(path)
    assert loaded == revocations
    loaded.verify(owner_keys=[OWNER.did])
    with pytest.raises(RevocationsInvalid, match="already exists"):
        revocations.save(path)
    Revocations.issue(OWNER, ["c"]).save(path, overwrite=True)
    assert Revocations.from_file(path).ids == {"c"}


@pytest.mark.parametrize(
    "changes",
    [
        {"revoked": ["a", "a"]},
        {"revoked": "a"},
        {"revoked": [1]},
        {"revoked": ["bad id"]},
        {"type": MANDATE_TYPE},
        {"owner": "did:web:x"},
        {"issued_at": "yesterday"},
        {"extra": True},
    ],
)
def test_malformed_revocations(changes: dict[str, Any]) -> None:
    data = {**Revocations.issue(OWNER, ["a"]).to_dict(), **changes}
    with pytest.raises(RevocationsInvalid, match="malformed revocation list"):
        Revocations.from_dict(data)


def test_a_mandate_is_not_a_revocation_list(mandate: Mandate) -> None:
    with pytest.raises(RevocationsInvalid):
        Revocations.from_json(mandate.to_json())
    with pytest.raises(MandateError):
        Mandate.from_json(Revocations.issue(OWNER, []).to_json())


def test_revocations_issue_checks() -> None:
    with pytest.raises(TypeError):
        Revocations.issue(OWNER, "m-1")
    with pytest.raises(TypeError):
        Revocations.issue(AGENT, ["m-1"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Revocations.issue(OWNER, ["bad id"])


# -- serialization -----------------------------------------------------------


def test_json_round_trip(mandate: Mandate) -> None:
    text = mandate.to_json()
    assert json.loads(text)["signature"] == mandate.signature
    loaded = Mandate.from_json(text)
    assert loaded == mandate
    assert hash(loaded) == hash(mandate)
    assert loaded.to_json() == text
    assert Mandate.from_json(text.encode()) == mandate
    verify(loaded)


def test_pretty_printed_json_still_verifies(mandate: Mandate) -> None:
    verify(Mandate.from_json(json.dumps(mandate.to_dict(), indent=4, sort_keys=False)))


def test_file_round_trip_and_load_mandate(tmp_path: Path, mandate: Mandate) -> None:
    path = tmp_path / "agent.mandate.json"
    mandate.save(path)
    assert Mandate.from_file(path) == mandate
    loaded = load_mandate(path, owner_keys=[OWNER.did], agent=AGENT, now=NOW)
    assert loaded == mandate
    with pytest.raises(MandateExpired):
        load_mandate(path, owner_keys=[OWNER.did], agent=AGENT, now=END + timedelta(seconds=5))
    with pytest.raises(MandateRevoked):
        load_mandate(path, owner_keys=[OWNER.did], agent=AGENT, now=NOW, revoked=["m-1"])


def test_load_mandate_defaults_to_the_current_time(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    issue(expires_at=datetime.now(UTC) - timedelta(minutes=1)).save(path)
    with pytest.raises(MandateExpired):
        load_mandate(path, owner_keys=[OWNER.did], agent=AGENT)


def test_save_refuses_to_overwrite(tmp_path: Path, mandate: Mandate) -> None:
    path = tmp_path / "m.json"
    mandate.save(path)
    renewed = issue(id="m-2")
    with pytest.raises(MandateError, match="already exists"):
        renewed.save(path)
    assert Mandate.from_file(path) == mandate
    renewed.save(path, overwrite=True)
    assert Mandate.from_file(path) == renewed
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(MandateError, match="cannot read mandate"):
        Mandate.from_file(tmp_path / "missing.json")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(MandateError, match="larger than"):
        Mandate.from_file(big)


def test_repr_is_short_and_public(mandate: Mandate) -> None:
    text = repr(mandate)
    assert text.startswith("Mandate(id='m-1'")
    assert mandate.signature not in text


def test_mandates_are_read_only(mandate: Mandate) -> None:
    with pytest.raises(AttributeError):
        mandate.id = "m-2"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        mandate.expires_at = END + timedelta(days=1)  # type: ignore[misc]


def _valid() -> dict[str, Any]:
    return issue().to_dict()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "[]",
        '"mandate"',
        "{",
        json.dumps({k: v for k, v in _valid().items() if k != "signature"}),
        json.dumps({k: v for k, v in _valid().items() if k != "policy"}),
        json.dumps({**_valid(), "extra": 1}),
        json.dumps({**_valid(), "type": "mpp-client/mandate/v2"}),
        json.dumps({**_valid(), "id": 7}),
        json.dumps({**_valid(), "id": ""}),
        json.dumps({**_valid(), "id": "a\nb"}),
        json.dumps({**_valid(), "agent": "did:web:agent.test"}),
        json.dumps({**_valid(), "agent": None}),
        json.dumps({**_valid(), "owner": "did:key:z6Mk"}),
        json.dumps({**_valid(), "policy": ["a"]}),
        json.dumps({**_valid(), "policy": "{}"}),
        json.dumps({**_valid(), "expires_at": "2026-12-21T12:00:00"}),
        json.dumps({**_valid(), "expires_at": 1798200000}),
        json.dumps({**_valid(), "expires_at": "2026-11-21T11:00:00Z"}),
        json.dumps({**_valid(), "not_before": "2026-13-01T00:00:00Z"}),
        json.dumps({**_valid(), "signature": "not base64!"}),
        json.dumps({**_valid(), "signature": b64url_encode(bytes(63))}),
        json.dumps({**_valid(), "signature": None}),
        json.dumps(_valid())[:-1] + ', "id": "m-2"}',  # duplicate key
        json.dumps({**_valid(), "policy": {"x": float("nan")}}),
        "[" * 10000 + "]" * 10000,
        '{"policy": ' * 100 + "{}" + "}" * 100,
        json.dumps(_valid()) + "\ud800",
    ],
)
def test_malformed_mandates_raise_mandate_error(text: str) -> None:
    with pytest.raises(MandateError, match="malformed mandate") as info:
        Mandate.from_json(text)
    assert type(info.value) is MandateError
    assert_no_secrets(info.value)


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b"{" + b" " * (1024 * 1024) + b"}"])
def test_malformed_bytes(raw: bytes) -> None:
    with pytest.raises(MandateError):
        Mandate.from_json(raw)


def test_from_dict_refuses_non_mappings_and_non_json() -> None:
    with pytest.raises(MandateError):
        Mandate.from_dict(["a"])  # type: ignore[arg-type]
    with pytest.raises(MandateError, match="JSON"):
        Mandate.from_dict({**_valid(), "policy": {"x": {1, 2}}})


@settings(max_examples=300)
@given(st.text())
def test_arbitrary_text_raises_only_mandate_error(text: str) -> None:
    with pytest.raises(MandateError):
        Mandate.from_json(text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    field=st.sampled_from(sorted(_valid())),
    value=JSON,
    drop=st.booleans(),
)
def test_mutated_documents_never_verify(field: str, value: Any, drop: bool) -> None:
    """Changing or dropping any one field is refused, by the parser or by verify()."""
    data = _valid()
    if drop:
        del data[field]
    elif data[field] == value:
        return
    else:
        data[field] = value
    with pytest.raises(MandateError):
        verify(Mandate.from_json(json.dumps(data)))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_mandate_files_are_not_forced_private(tmp_path: Path, mandate: Mandate) -> None:
    old = os.umask(0o022)
    try:
        mandate.save(tmp_path / "m.json")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
