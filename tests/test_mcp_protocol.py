"""The MCP form of the wire (mpp_client.protocol._mcp): challenges, credentials, receipts.

No MCP SDK here: these are the pure checks, the same as the HTTP parser's.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from mpp_client import ChallengeError, ProtocolError
from mpp_client.protocol import (
    MAX_CHALLENGE_BYTES,
    MCP_PAYMENT_REQUIRED,
    MCP_VERIFICATION_FAILED,
    Challenge,
    McpChallenge,
    McpPaymentRequired,
    Receipt,
    b64url_encode,
    canonical_json,
    is_mcp_payment_required,
    mcp_challenge_object,
    mcp_credential,
    mcp_receipt,
    parse_mcp_credential,
    parse_mcp_receipt,
)
from mpp_client.protocol._b64 import b64url_decode_json

GOOD = {
    "id": "ch_abc123",
    "realm": "tools.example.com",
    "method": "tempo",
    "intent": "charge",
    "request": {
        "amount": "10",
        "currency": "usd",
        "recipient": "0xAbC",
        "methodDetails": {"chainId": 42431},
    },
    "expires": "2025-01-15T12:05:00.123Z",
    "description": "Web search \u2615",
    "x-unknown": {"kept": [1, 2.5, None]},
}


def data(*challenges: object, **extra: object) -> dict[str, object]:
    return {"httpStatus": 402, "challenges": list(challenges), **extra}


def test_a_challenge_object_validates_and_binds_the_jcs_request() -> None:
    offer = McpChallenge.parse(copy.deepcopy(GOOD))
    challenge = offer.challenge
    assert (challenge.id, challenge.realm, challenge.method, challenge.intent) == (
        "ch_abc123",
        "tools.example.com",
        "tempo",
        "charge",
    )
    # Servers bind the id to the JCS bytes of `request`: wallets sign those.
    assert challenge.request_b64 == b64url_encode(canonical_json(GOOD["request"]))
    assert challenge.expires == datetime(2025, 1, 15, 12, 5, 0, 123000, tzinfo=UTC)
    assert challenge.expires_raw == "2025-01-15T12:05:00.123Z"
    assert challenge.description == "Web search \u2615"
    # What goes back is the object as received, unknown fields included.
    assert offer.echo == GOOD


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "empty 'id'"),
        ({"id": 7}, "'id' must be a string"),
        ({"realm": None}, "'realm' must be a string"),
        ({"method": "Tempo"}, "invalid method"),
        ({"method": "1x"}, "invalid method"),
        ({"intent": "char ge"}, "invalid intent"),
        ({"request": "eyJhbW91bnQiOiIxMCJ9"}, r"must be a JSON object \(not base64url\)"),
        ({"request": [1]}, "must be a JSON object"),
        ({"expires": "2025-01-15 12:05"}, "not an RFC 3339"),
        ({"expires": "2025-01-15T12:05:00"}, "not an RFC 3339"),  # no offset
        ({"expires": 1736942700}, "'expires' must be a string"),
        ({"description": 5}, "'description' must be a string"),
        ({"opaque": {"n": 1}}, "map of strings"),
        ({"opaque": "not base64!"}, "'opaque'"),
        ({"opaque": 3}, "'opaque'"),
    ],
)
def test_bad_challenge_objects_are_refused_with_the_reason(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ChallengeError, match=message):
        McpChallenge.parse({**GOOD, **change})


@pytest.mark.parametrize("missing", ["id", "realm", "method", "intent", "request"])
def test_every_required_field_is_required(missing: str) -> None:
    value = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ChallengeError, match=f"missing the required field {missing!r}"):
        McpChallenge.parse(value)


def test_opaque_comes_as_an_object_or_as_the_string_it_binds() -> None:
    meta = {"route": "tools/call search", "n": "caf\u00e9"}
    as_object = McpChallenge.parse({**GOOD, "opaque": meta})  # pympp's form
    as_string = McpChallenge.parse({**GOOD, "opaque": b64url_encode(canonical_json(meta))})  # mppx
    assert as_object.challenge.opaque == as_string.challenge.opaque == meta
    assert as_object.challenge.opaque_b64 == as_string.challenge.opaque_b64
    # Each is echoed in the form it came in.
    assert as_object.echo["opaque"] == meta
    assert isinstance(as_string.echo["opaque"], str)


def test_payment_required_keeps_good_offers_next_to_broken_ones() -> None:
    required = McpPaymentRequired.parse(
        MCP_PAYMENT_REQUIRED,
        data(
            {**GOOD, "method": "BAD"},
            GOOD,
            "not an object",
            problem={"type": "https://paymentauth.org/problems/payment-required", "detail": "pay"},
        ),
    )
    assert [o.challenge.id for o in required.offers] == ["ch_abc123"]
    assert len(required.broken) == 2
    assert required.problem is not None and required.problem.code == "payment-required"
    assert required.http_status == 402 and required.retryable


def test_a_verification_failure_reads_pympps_failure_object() -> None:
    required = McpPaymentRequired.parse(
        MCP_VERIFICATION_FAILED,
        data(GOOD, failure={"reason": "verification-failed", "detail": "bad signature"}),
    )
    assert required.problem is not None
    assert required.problem.code == "verification-failed"
    assert required.problem.detail == "bad signature"
    denied = McpPaymentRequired.parse(MCP_VERIFICATION_FAILED, {**data(GOOD), "httpStatus": 403})
    assert not denied.retryable  # paid but denied: never an invitation to pay again


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"challenges": "x"},
        {"challenges": [{"n": float("nan")}]},
        {"challenges": [{"s": "\ud800"}]},
    ],
)
def test_structurally_bad_error_data_is_a_challenge_error(bad: object) -> None:
    with pytest.raises(ChallengeError):
        McpPaymentRequired.parse(MCP_PAYMENT_REQUIRED, bad)


def test_challenges_over_the_http_size_limit_are_refused_unread() -> None:
    big = {**GOOD, "description": "x" * MAX_CHALLENGE_BYTES}
    with pytest.raises(ChallengeError, match="byte limit"):
        McpPaymentRequired.parse(MCP_PAYMENT_REQUIRED, data(big))


def test_deep_nesting_is_refused() -> None:
    deep: object = "x"
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ChallengeError, match="nests deeper"):
        McpPaymentRequired.parse(MCP_PAYMENT_REQUIRED, data({**GOOD, "request": {"d": deep}}))


def test_only_errors_with_challenges_are_payment_requests() -> None:
    assert is_mcp_payment_required(-32042, data(GOOD))
    assert is_mcp_payment_required(-32043, data(GOOD))
    # -32042 is also MCP's "URL elicitation required": no challenges, not a payment.
    assert not is_mcp_payment_required(-32042, {"elicitations": []})
    assert not is_mcp_payment_required(-32602, data(GOOD))
    assert not is_mcp_payment_required(-32042, None)


def test_the_credential_echoes_the_challenge_as_received() -> None:
    offer = McpChallenge.parse(copy.deepcopy(GOOD))
    credential = mcp_credential(offer, {"signature": "0x1b"}, source="did:key:z6Mk")
    assert credential == {
        "challenge": GOOD,
        "payload": {"signature": "0x1b"},
        "source": "did:key:z6Mk",
    }
    credential["challenge"]["request"]["amount"] = "1"  # a copy: the offer is untouched
    assert offer.echo["request"]["amount"] == "10"
    assert "source" not in mcp_credential(offer, {})


def test_a_credential_payload_that_is_not_json_names_no_contents() -> None:
    offer = McpChallenge.parse(GOOD)
    with pytest.raises(ProtocolError) as caught:
        mcp_credential(offer, {"secret-key": object()})
    assert "secret-key" not in str(caught.value)


def test_the_server_reads_a_credential_back_to_the_strings_it_bound() -> None:
    challenge = Challenge.create(
        id="id-1",
        realm="r",
        method="dev",
        intent="charge",
        request={"amount": "25", "currency": "usd"},
        expires=datetime(2030, 1, 1, tzinfo=UTC),
        opaque={"route": "tools/call weather"},
    )
    wire = mcp_challenge_object(challenge)
    assert wire["request"] == {"amount": "25", "currency": "usd"}
    assert wire["opaque"] == {"route": "tools/call weather"}
    credential = parse_mcp_credential(
        mcp_credential(McpChallenge.parse(wire), {"type": "voucher"}, source="p")
    )
    assert credential.echo["request"] == challenge.request_b64
    assert credential.echo["opaque"] == challenge.opaque_b64
    assert credential.echo["expires"] == challenge.expires_raw
    assert credential.payload == {"type": "voucher"} and credential.source == "p"


@pytest.mark.parametrize(
    "bad",
    [
        "Payment abc",
        {"payload": {}},
        {
            "challenge": {"id": "", "realm": "r", "method": "dev", "intent": "c", "request": {}},
            "payload": {},
        },
        {
            "challenge": {
                "id": "i",
                "realm": "r",
                "method": "dev",
                "intent": "c",
                "request": "e30",
            },
            "payload": {},
        },
        {"challenge": {"id": "i", "realm": "r", "method": "dev", "intent": "c", "request": {}}},
        {
            "challenge": {"id": "i", "realm": "r", "method": "dev", "intent": "c", "request": {}},
            "payload": {},
            "source": 1,
        },
    ],
)
def test_malformed_credentials_are_protocol_errors(bad: object) -> None:
    with pytest.raises(ProtocolError):
        parse_mcp_credential(bad)


def test_receipts_follow_the_payment_receipt_rules() -> None:
    receipt = parse_mcp_receipt(
        {
            "status": "success",
            "method": "tempo",
            "timestamp": "2025-01-15T12:00:15Z",
            "reference": "0xtx",
            "challengeId": "ch_abc123",
        }
    )
    assert (receipt.method, receipt.reference) == ("tempo", "0xtx")
    assert receipt.data["challengeId"] == "ch_abc123"
    for bad in (
        {"status": "failed", "method": "tempo", "reference": "x"},
        {"status": "success", "reference": "x"},
        {"status": "success", "method": "tempo", "reference": "x", "timestamp": "yesterday"},
        "eyJzdGF0dXMiOiJzdWNjZXNzIn0",
        {"status": "success", "method": "tempo", "reference": "x" * 20000},
    ):
        with pytest.raises(ProtocolError):
            parse_mcp_receipt(bad)


def test_a_server_receipt_names_its_challenge() -> None:
    receipt = Receipt(
        status="success",
        method="dev",
        reference="dev:1",
        timestamp=datetime(2030, 1, 1, tzinfo=UTC),
        data={"payer": "did:key:z"},
    )
    wire = mcp_receipt(receipt, "id-1")
    assert wire["challengeId"] == "id-1" and wire["payer"] == "did:key:z"
    assert parse_mcp_receipt(wire).reference == "dev:1"
    assert b64url_decode_json(receipt.to_header())["reference"] == "dev:1"
