"""The official MPP conformance vectors (tests/data/conformance, see SOURCE.md).

Every scenario of every in-scope file becomes one test. A scenario whose
``adapters`` list does not name "python" is skipped; every other one must pass,
within its python time budget when the vector gives one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mpp_client import ChallengeError, Credential, ProtocolError
from mpp_client.protocol import (
    Challenge,
    canonical_json,
    challenge_id,
    format_challenge,
    parse_challenges,
    parse_rfc3339,
)
from mpp_client.protocol._authparams import split_challenges
from mpp_client.protocol._b64 import (
    Base64Error,
    b64url_decode_json,
    b64url_decode_text,
    b64url_encode,
)

from .helpers import pay_now

DATA = Path(__file__).parent / "data" / "conformance"

WWW_AUTHENTICATE = "www-authenticate.json"
AUTHORIZATION = "authorization.json"
BASE64URL = "base64url.json"
CHALLENGE_ID = "challenge-id.json"
TEMPO_PROOF = "tempo-proof.json"

# How many scenarios each in-scope file holds (and how many apply to Python).
# Pinned so that a loader that silently finds nothing, or a changed vector file,
# fails loudly instead of passing with fewer tests.
EXPECTED_SCENARIOS = {
    WWW_AUTHENTICATE: (27, 27),
    AUTHORIZATION: (9, 8),
    BASE64URL: (12, 12),
    CHALLENGE_ID: (29, 29),
}

# What each vector error_type means for our API, per file.
ERRORS: dict[str, dict[str, type[Exception]]] = {
    WWW_AUTHENTICATE: {"parse_error": ChallengeError, "format_error": ChallengeError},
    AUTHORIZATION: {"parse_error": ProtocolError, "format_error": ProtocolError},
    BASE64URL: {"encoding_error": Base64Error},
    CHALLENGE_ID: {"generation_error": ValueError},
}

T = TypeVar("T")


def _load(name: str) -> dict[str, Any]:
    with (DATA / name).open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def _params(name: str) -> list[Any]:
    return [
        pytest.param(name, scenario, id=f"{name.removesuffix('.json')}:{scenario['name']}")
        for scenario in _load(name)["scenarios"]
    ]


PARAMS = {name: _params(name) for name in EXPECTED_SCENARIOS}


def _applies_to_python(scenario: dict[str, Any]) -> bool:
    adapters = scenario.get("adapters")
    return adapters is None or "python" in adapters


def _skip_unless_python(scenario: dict[str, Any]) -> None:
    if not _applies_to_python(scenario):
        pytest.skip(f"scenario restricted to adapters {scenario['adapters']}")


def _wire(value: str | dict[str, Any]) -> str:
    """A vector's wire text; ``{prefix, repeat, count}`` expands to a stress input."""
    if isinstance(value, str):
        return value
    assert set(value) == {"prefix", "repeat", "count"}, value
    return value["prefix"] + value["repeat"] * value["count"]


def _timed(scenario: dict[str, Any], call: Callable[[], T]) -> T:
    """Run ``call``, failing if it exceeds the scenario's python time budget."""
    budget_ms = scenario.get("maxDurationMsByAdapter", {}).get("python")
    start = time.perf_counter()
    result = call()
    elapsed_ms = (time.perf_counter() - start) * 1000
    if budget_ms is not None:
        assert elapsed_ms <= budget_ms, f"took {elapsed_ms:.1f} ms, budget {budget_ms} ms"
    return result


def _expect_failure(
    file: str, scenario: dict[str, Any], expected: dict[str, Any], call: Callable[[], object]
) -> None:
    assert expected.get("success") is False, expected
    error = ERRORS[file].get(expected["error_type"])
    assert error is not None, f"unknown error_type {expected['error_type']!r} for {file}"

    def attempt() -> None:
        with pytest.raises(error):
            call()

    _timed(scenario, attempt)


def _checks(scenario: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    tests: dict[str, Any] = scenario["tests"]
    assert tests, "scenario names no checks"
    assert set(tests) <= allowed, f"unknown checks {set(tests) - allowed}"
    for value in tests.values():
        assert value is True or (isinstance(value, dict) and value.get("success") is False)
    return tests


# --------------------------------------------------------------------------- #
# www-authenticate.json
# --------------------------------------------------------------------------- #

_CHALLENGE_KEYS = {"id", "realm", "method", "intent", "request"}
_CHALLENGE_OPTIONAL = {"description", "digest", "expires", "opaque", "header"}


def _challenge_optional(challenge: Challenge) -> dict[str, str | None]:
    return {
        "description": challenge.description,
        "digest": challenge.digest,
        "expires": challenge.expires_raw,
        # The vectors carry opaque as its wire string.
        "opaque": challenge.opaque_b64,
        "header": challenge.header,
    }


def _assert_challenge_equals(challenge: Challenge, obj: dict[str, Any]) -> None:
    assert set(obj) <= _CHALLENGE_KEYS | _CHALLENGE_OPTIONAL, set(obj)
    assert challenge.id == obj["id"]
    assert challenge.realm == obj["realm"]
    assert challenge.method == obj["method"]
    assert challenge.intent == obj["intent"]
    assert challenge.request == obj["request"]
    # Present keys must match; absent keys must be absent.
    assert _challenge_optional(challenge) == {key: obj.get(key) for key in _CHALLENGE_OPTIONAL}
    if "expires" in obj:
        assert challenge.expires == parse_rfc3339(obj["expires"])
    else:
        assert challenge.expires is None


def _parse_one(wire: str) -> Challenge:
    challenges = parse_challenges(wire)
    assert len(challenges) == 1, challenges
    return challenges[0]


def _build_challenge(obj: dict[str, Any]) -> Challenge:
    expires = obj.get("expires")
    challenge = Challenge.create(
        id=obj["id"],
        realm=obj["realm"],
        method=obj["method"],
        intent=obj["intent"],
        request=obj["request"],
        expires=parse_rfc3339(expires) if expires is not None else None,
        digest=obj.get("digest"),
        description=obj.get("description"),
        header=obj.get("header"),
    )
    # The formatting of our datetime must reproduce the vector's string; it
    # does for every current vector (asserted here, not patched over).
    assert challenge.expires_raw == expires
    if "opaque" in obj:
        # The vectors give opaque already encoded (e.g. "trace-123"), while
        # Challenge.create takes a map to encode: set the wire string directly.
        challenge = dataclasses.replace(challenge, opaque_b64=obj["opaque"])
    return challenge


def _param_dict(header: str) -> dict[str, str]:
    raws = split_challenges(header)
    assert len(raws) == 1, raws
    raw = raws[0]
    assert raw.scheme.lower() == "payment"
    assert not raw.damaged
    assert not raw.broken
    assert raw.token68 is None
    params = dict(raw.params)
    assert len(params) == len(raw.params), "duplicate parameter"
    return params


@pytest.mark.parametrize(("file", "scenario"), PARAMS[WWW_AUTHENTICATE])
def test_www_authenticate(file: str, scenario: dict[str, Any]) -> None:
    _skip_unless_python(scenario)
    tests = _checks(scenario, {"parse", "format", "roundtrip"})
    obj = scenario.get("object")

    if "parse" in tests:
        wire = _wire(scenario["wire"])
        if tests["parse"] is True:
            _assert_challenge_equals(_timed(scenario, lambda: _parse_one(wire)), obj)
        else:
            _expect_failure(file, scenario, tests["parse"], lambda: parse_challenges(wire))

    if "format" in tests:
        if tests["format"] is True:
            formatted = _timed(scenario, lambda: format_challenge(_build_challenge(obj)))
            assert formatted.startswith("Payment ")
            assert _param_dict(formatted) == _param_dict(_wire(scenario["wire"]))
        else:
            _expect_failure(
                file, scenario, tests["format"], lambda: format_challenge(_build_challenge(obj))
            )

    if "roundtrip" in tests:
        assert tests["roundtrip"] is True
        parsed = _timed(scenario, lambda: _parse_one(format_challenge(_build_challenge(obj))))
        _assert_challenge_equals(parsed, obj)


# --------------------------------------------------------------------------- #
# authorization.json
# --------------------------------------------------------------------------- #


def _assert_credential_equals(credential: Credential, obj: dict[str, Any]) -> None:
    assert set(obj) <= {"challenge", "payload", "source"}, set(obj)
    echo = dict(credential.echo)
    echo["request"] = b64url_decode_json(echo["request"])
    assert echo == obj["challenge"]
    assert credential.payload == obj["payload"]
    assert credential.source == obj.get("source")


def _build_credential(obj: dict[str, Any]) -> Credential:
    echo = dict(obj["challenge"])
    echo["request"] = b64url_encode(canonical_json(echo["request"]))
    return Credential(echo=echo, payload=obj["payload"], source=obj.get("source"))


def _decode_credential_header(header: str) -> dict[str, Any]:
    scheme, _, token = header.partition(" ")
    assert scheme == "Payment"
    data = b64url_decode_json(token)
    data["challenge"] = dict(data["challenge"])
    data["challenge"]["request"] = b64url_decode_json(data["challenge"]["request"])
    return data


@pytest.mark.parametrize(("file", "scenario"), PARAMS[AUTHORIZATION])
def test_authorization(file: str, scenario: dict[str, Any]) -> None:
    _skip_unless_python(scenario)
    tests = _checks(scenario, {"parse", "format", "roundtrip"})
    obj = scenario.get("object")

    if "parse" in tests:
        wire = _wire(scenario["wire"])
        if tests["parse"] is True:
            _assert_credential_equals(_timed(scenario, lambda: Credential.parse(wire)), obj)
        else:
            _expect_failure(file, scenario, tests["parse"], lambda: Credential.parse(wire))

    if "format" in tests:
        if tests["format"] is True:
            header = _timed(scenario, lambda: _build_credential(obj).to_header())
            wire = _wire(scenario["wire"])
            assert _decode_credential_header(header) == _decode_credential_header(wire)
            # The echoed request string is bound by the challenge id: ours is
            # the canonical (JCS) encoding, and so is every vector's.
            ours = b64url_decode_json(header.partition(" ")[2])["challenge"]["request"]
            theirs = b64url_decode_json(wire.partition(" ")[2])["challenge"]["request"]
            assert ours == theirs
        else:
            _expect_failure(
                file, scenario, tests["format"], lambda: _build_credential(obj).to_header()
            )

    if "roundtrip" in tests:
        assert tests["roundtrip"] is True
        parsed = _timed(scenario, lambda: Credential.parse(_build_credential(obj).to_header()))
        _assert_credential_equals(parsed, obj)


# --------------------------------------------------------------------------- #
# base64url.json
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("file", "scenario"), PARAMS[BASE64URL])
def test_base64url(file: str, scenario: dict[str, Any]) -> None:
    _skip_unless_python(scenario)
    tests = _checks(scenario, {"parse", "format", "roundtrip"})
    assert set(scenario) - {"name", "description", "tags", "tests"} <= {"decoded", "encoded"}

    if "parse" in tests:
        encoded = scenario["encoded"]
        if tests["parse"] is True:
            assert _timed(scenario, lambda: b64url_decode_text(encoded)) == scenario["decoded"]
        else:
            _expect_failure(file, scenario, tests["parse"], lambda: b64url_decode_text(encoded))

    if "format" in tests:
        decoded = scenario["decoded"]
        if tests["format"] is True:
            assert _timed(scenario, lambda: b64url_encode(decoded)) == scenario["encoded"]
        else:
            _expect_failure(file, scenario, tests["format"], lambda: b64url_encode(decoded))

    if "roundtrip" in tests:
        assert tests["roundtrip"] is True
        decoded = scenario["decoded"]
        assert _timed(scenario, lambda: b64url_decode_text(b64url_encode(decoded))) == decoded


# --------------------------------------------------------------------------- #
# challenge-id.json
# --------------------------------------------------------------------------- #

_ID_INPUT_KEYS = {
    "secretKey",
    "realm",
    "method",
    "intent",
    "request",
    "expires",
    "digest",
    "opaque",
    "header",
    # Not part of the HMAC input: the vector checks that it changes nothing.
    "description",
}


def _generate_id(data: dict[str, Any]) -> str:
    assert set(data) <= _ID_INPUT_KEYS, set(data) - _ID_INPUT_KEYS
    return challenge_id(
        data["secretKey"].encode("utf-8"),
        realm=data["realm"],
        method=data["method"],
        intent=data["intent"],
        request_b64=b64url_encode(canonical_json(data["request"])),
        expires=data.get("expires"),
        digest=data.get("digest"),
        # The vectors give opaque as the wire string: bind it verbatim.
        opaque_b64=data.get("opaque"),
        header=data.get("header"),
    )


@pytest.mark.parametrize(("file", "scenario"), PARAMS[CHALLENGE_ID])
def test_challenge_id(file: str, scenario: dict[str, Any]) -> None:
    _skip_unless_python(scenario)
    data = scenario["input"]
    tests = _checks(scenario, {"generate"}) if "tests" in scenario else {"generate": True}
    # A scenario either expects an id or expects a failure, never neither.
    assert ("expected" in scenario) == (tests["generate"] is True)
    if tests["generate"] is True:
        assert _timed(scenario, lambda: _generate_id(data)) == scenario["expected"]
    else:
        _expect_failure(file, scenario, tests["generate"], lambda: _generate_id(data))


# --------------------------------------------------------------------------- #
# Bookkeeping
# --------------------------------------------------------------------------- #


def _tempo_proof_params() -> list[Any]:
    return [
        pytest.param(scenario, id=f"tempo-proof:{scenario['name']}")
        for scenario in _load(TEMPO_PROOF)["scenarios"]
    ]


def test_tempo_proof_has_every_scenario() -> None:
    data = _load(TEMPO_PROOF)
    assert data["commands"] == {"operation": "tempo.proof.typed_data"}
    assert len(data["scenarios"]) == 1
    assert len(_tempo_proof_params()) == 1


@pytest.mark.parametrize("scenario", _tempo_proof_params())
def test_tempo_proof(scenario: dict[str, Any]) -> None:
    # Needs the tempo extra (pytempo, eth-account); skip only if it is absent.
    tempo = pytest.importorskip("mpp_client.methods.tempo")
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    _skip_unless_python(scenario)
    data = scenario["input"]
    expected = scenario["expected"]
    assert expected["ok"] is True
    typed = _timed(
        scenario,
        lambda: tempo.proof_typed_data(
            chain_id=data["chainId"],
            challenge_id=data["challengeId"],
            realm=data["realm"],
            version=2,
        ),
    )
    assert typed == expected["value"]
    # The wallet signs exactly these typed data: the signature recovers to it
    # over the vector's value (with the implicit EIP712Domain type added).
    key = "0x" + "07" * 32
    challenge = Challenge.create(
        id=data["challengeId"],
        realm=data["realm"],
        method="tempo",
        intent="charge",
        request={
            "amount": "0",
            "currency": "0x20c0000000000000000000000000000000000000",
            "recipient": "0x742d35Cc6634c0532925a3b844bC9e7595F8fE00",
            "methodDetails": {"chainId": data["chainId"]},
        },
    )
    payload = pay_now(tempo.TempoWallet(key), challenge)
    assert payload["type"] == "proof"
    domain_type = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
    ]
    value = expected["value"]
    full = {**value, "types": {"EIP712Domain": domain_type, **value["types"]}}
    signer = Account.recover_message(
        encode_typed_data(full_message=full), signature=payload["signature"]
    )
    assert signer == Account.from_key(key).address


@pytest.mark.parametrize("file", sorted(EXPECTED_SCENARIOS))
def test_every_scenario_is_parametrized(file: str) -> None:
    total, applicable = EXPECTED_SCENARIOS[file]
    scenarios = _load(file)["scenarios"]
    params = PARAMS[file]
    assert len(scenarios) == total
    assert len(params) == total
    # Ids are unique, so no scenario hides behind another.
    assert len({param.id for param in params}) == total
    assert [param.values[1]["name"] for param in params] == [s["name"] for s in scenarios]
    assert sum(_applies_to_python(param.values[1]) for param in params) == applicable


def test_conformance_directory_has_no_unexpected_files() -> None:
    # A new upstream vector file must be wired in (or skipped) deliberately.
    found = {path.name for path in DATA.glob("*.json")}
    assert found == {*EXPECTED_SCENARIOS, TEMPO_PROOF}
