"""Unit and property tests of the wire format (``mpp_client.protocol``)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpp_client.protocol
from mpp_client import ChallengeError, ProtocolError
from mpp_client.protocol import (
    AUTHORIZATION,
    MAX_CHALLENGE_BYTES,
    MAX_CREDENTIAL_BYTES,
    PAYMENT_AUTHORIZATION,
    PROBLEM_BASE,
    Challenge,
    Credential,
    Problem,
    Receipt,
    b64url_decode,
    b64url_encode,
    canonical_json,
    content_digest,
    digest_matches,
    format_accept_payment,
    format_challenge,
    parse_challenges,
    parse_challenges_lenient,
    parse_rfc3339,
)
from mpp_client.protocol._b64 import Base64Error, b64url_decode_json, b64url_decode_text

REQUIRED = 'id="a", realm="r", method="m", intent="charge", request="e30"'
PAYMENT = "Payment " + REQUIRED


def _header(**params: str | None) -> str:
    """A Payment challenge with the required params, overridden/removed/extended by ``params``.

    Values are written quoted and verbatim (no escaping); ``None`` drops a parameter.
    """
    values: dict[str, str | None] = {
        "id": "a",
        "realm": "r",
        "method": "m",
        "intent": "charge",
        "request": "e30",
    }
    values.update(params)
    return "Payment " + ", ".join(f'{k}="{v}"' for k, v in values.items() if v is not None)


def _b64json(text: str) -> str:
    return b64url_encode(text.encode("utf-8"))


def _one(value: Any) -> Challenge:
    challenges = parse_challenges(value)
    assert len(challenges) == 1, challenges
    return challenges[0]


# --------------------------------------------------------------------------- #
# parse_challenges: shapes of the header
# --------------------------------------------------------------------------- #


def test_minimal_challenge() -> None:
    ch = _one(PAYMENT)
    assert (ch.id, ch.realm, ch.method, ch.intent) == ("a", "r", "m", "charge")
    assert ch.request == {}
    assert ch.request_b64 == "e30"
    assert ch.key == "m/charge"
    assert ch.expires is None
    assert ch.expires_raw is None
    assert ch.digest is None
    assert ch.description is None
    assert ch.opaque is None
    assert ch.opaque_b64 is None
    assert ch.header is None
    assert ch.credential_header == AUTHORIZATION


def test_several_challenges_in_one_value() -> None:
    value = _header(id="one", method="tempo") + ", " + _header(id="two", method="stripe")
    challenges = parse_challenges(value)
    assert [(c.id, c.method) for c in challenges] == [("one", "tempo"), ("two", "stripe")]


def test_several_values() -> None:
    values = [_header(id="one"), 'Basic realm="x"', _header(id="two") + ", " + _header(id="3")]
    assert [c.id for c in parse_challenges(values)] == ["one", "two", "3"]
    # Any iterable of strings will do.
    assert [c.id for c in parse_challenges(iter(values))] == ["one", "two", "3"]
    assert [c.id for c in parse_challenges(tuple(values))] == ["one", "two", "3"]


@pytest.mark.parametrize(
    "before",
    [
        'Basic realm="x", ',
        "Bearer abc, ",
        "Basic YQ==, ",
        "Bearer, ",
        'Digest realm="d", nonce="n", qop="auth", ',
        'Basic realm="contains, a comma and Payment id=x", ',
        "Negotiate, Basic YWxhZGRpbjpvcGVuc2VzYW1l, ",
    ],
)
def test_other_schemes_before_payment(before: str) -> None:
    ch = _one(before + PAYMENT)
    assert (ch.id, ch.realm) == ("a", "r")


@pytest.mark.parametrize(
    "after",
    [', Basic realm="x"', ", Bearer abc", ", Basic YQ==", ', Digest realm="d", id="x"'],
)
def test_other_schemes_after_payment(after: str) -> None:
    # The other scheme's params (realm, id) must not leak into the Payment challenge.
    ch = _one(PAYMENT + after)
    assert (ch.id, ch.realm) == ("a", "r")
    assert set(ch.params) == {"id", "realm", "method", "intent", "request"}


def test_only_other_schemes_is_an_error() -> None:
    with pytest.raises(ChallengeError, match="no Payment challenge"):
        parse_challenges('Basic realm="x", Bearer abc')


@pytest.mark.parametrize("value", ["", "   ", [], [""], ", ,"])
def test_empty_header_is_an_error(value: Any) -> None:
    with pytest.raises(ChallengeError, match="no Payment challenge"):
        parse_challenges(value)


def test_scheme_and_param_names_are_case_insensitive() -> None:
    ch = _one('pAyMeNt ID="a", REALM="r", Method="m", INTENT="charge", Request="e30", FOO="x"')
    assert (ch.id, ch.realm, ch.method, ch.intent) == ("a", "r", "m", "charge")
    assert ch.params["foo"] == "x"
    # Values keep their case.
    assert _one(_header(realm="API.Example.COM")).realm == "API.Example.COM"


def test_token_and_quoted_values() -> None:
    ch = _one("Payment id=abc_1, realm=api.example.com, method=tempo, intent=charge, request=e30")
    assert (ch.id, ch.realm, ch.method, ch.request_b64) == (
        "abc_1",
        "api.example.com",
        "tempo",
        "e30",
    )
    mixed = _one('Payment id=abc, realm="r r", method=tempo, intent="charge", request=e30')
    assert (mixed.id, mixed.realm, mixed.intent) == ("abc", "r r", "charge")


def test_backslash_escapes() -> None:
    ch = _one(PAYMENT + r', description="a\"b\\c\d \\\"q\\\""')
    assert ch.description == 'a"b\\cd \\"q\\"'


@pytest.mark.parametrize(
    ("escaped", "decoded"),
    [
        (r"caf\u00e9", "café"),
        (r"\u2615 coffee", "☕ coffee"),
        (r"smile \ud83d\ude00!", "smile \U0001f600!"),
        (r"\uD83D\uDE00", "\U0001f600"),
        (r"lone \ud83d high", "lone \ufffd high"),
        (r"lone \ude00 low", "lone \ufffd low"),
        (r"\ud83d\u0041", "\ufffdA"),
        (r"short \u12 escape", "short u12 escape"),
        (r"\\u00e9", r"\u00e9"),
    ],
)
def test_unicode_escapes(escaped: str, decoded: str) -> None:
    assert _one(PAYMENT + f', description="{escaped}"').description == decoded


def test_latin1_and_raw_unicode_values_are_kept() -> None:
    assert _one(_header(description="naïve – ☕")).description == "naïve – ☕"


@pytest.mark.parametrize(
    "value",
    [
        'Payment id = "a" , realm= "r",method ="m"  ,intent=charge,request = e30',
        'Payment\tid="a",\trealm="r" ,\t method="m", intent="charge" , request="e30"  ',
        '  Payment   id="a",,, realm="r", ,method="m",intent="charge",request="e30",',
        ',Payment id="a", realm="r", method="m", intent="charge", request="e30"',
    ],
)
def test_whitespace_and_empty_list_elements(value: str) -> None:
    ch = _one(value)
    assert (ch.id, ch.realm, ch.method, ch.intent, ch.request) == ("a", "r", "m", "charge", {})


def test_unknown_params_are_kept() -> None:
    ch = _one(PAYMENT + ', foo="bar", Baz=qux, empty=""')
    assert ch.params["foo"] == "bar"
    assert ch.params["baz"] == "qux"
    assert ch.params["empty"] == ""
    assert ch.params["request"] == "e30"


def test_unterminated_unknown_param_is_ignored() -> None:
    ch = _one(PAYMENT + ', x="never closed \\" still open')
    assert ch.id == "a"
    assert "x" not in ch.params


def test_request_and_opaque_are_decoded() -> None:
    request = {"amount": "1000", "currency": "USD", "nested": {"n": 1, "l": [True, None]}}
    opaque = {"route": "/api/premium", "trace": "t-1"}
    ch = _one(
        _header(
            request=b64url_encode(canonical_json(request)),
            opaque=b64url_encode(canonical_json(opaque)),
        )
    )
    assert ch.request == request
    assert ch.opaque == opaque
    assert ch.opaque_b64 == b64url_encode(canonical_json(opaque))


def test_digest_is_kept_verbatim() -> None:
    for digest in ["sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", "sha-256=abc", "x"]:
        assert _one(_header(digest=digest)).digest == digest


# --------------------------------------------------------------------------- #
# parse_challenges: validation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["id", "realm", "method", "intent", "request"])
def test_missing_required_param(name: str) -> None:
    with pytest.raises(ChallengeError, match=f"missing the required parameter '{name}'"):
        parse_challenges(_header(**{name: None}))


def test_empty_id() -> None:
    with pytest.raises(ChallengeError, match="empty 'id'"):
        parse_challenges(_header(id=""))
    with pytest.raises(ChallengeError, match="empty 'id'"):
        parse_challenges("Payment realm=r, id=, method=m, intent=charge, request=e30")


def test_empty_realm_is_allowed() -> None:
    assert _one(_header(realm="")).realm == ""


@pytest.mark.parametrize(
    "method", ["x402", "tempo-pay", "vendor:method", "a", "a_b", "stripe", "t0-_:x"]
)
def test_valid_methods(method: str) -> None:
    assert _one(_header(method=method)).method == method


@pytest.mark.parametrize(
    "method", ["Tempo", "TEMPO", "tem.po", "tem po", "1tempo", "-tempo", "", "tempö", "a/b"]
)
def test_invalid_methods(method: str) -> None:
    with pytest.raises(ChallengeError, match="invalid method"):
        parse_challenges(_header(method=method))


@pytest.mark.parametrize("intent", ["", "char ge", "charge!", "a/b"])
def test_invalid_intents(intent: str) -> None:
    with pytest.raises(ChallengeError, match="invalid intent"):
        parse_challenges(_header(intent=intent))


@pytest.mark.parametrize(
    ("request_b64", "problem"),
    [
        ("e30=", "outside the base64url alphabet"),
        ("e30==", "outside the base64url alphabet"),
        ("e3+0", "outside the base64url alphabet"),
        ("e3/0", "outside the base64url alphabet"),
        ("not-valid!!!", "outside the base64url alphabet"),
        ("e", "impossible length"),
        ("e31", "non-zero trailing bits"),
        ("bm90IGpzb24", "not valid JSON"),
        ("W10", "does not hold a JSON object"),  # []
        ("Ingi", "does not hold a JSON object"),  # "x"
        ("MQ", "does not hold a JSON object"),  # 1
        ("bnVsbA", "does not hold a JSON object"),  # null
        ("", "not valid JSON"),
        (_b64json('{"a":1,"a":2}'), "duplicate key"),
        (_b64json('{"a":NaN}'), "NaN"),
        (_b64json('{"a":Infinity}'), "Infinity"),
        (_b64json('{"a":1e999}'), "out of the range of a double"),
        (_b64json('{"a":[-1.5E400]}'), "out of the range of a double"),
        (_b64json('{"a":"\\ud800"}'), "lone UTF-16 surrogate"),
        (b64url_encode(b"\xff\xfe{}"), "UTF-8"),
        (_b64json("[" * 100 + "]" * 100), "nests deeper"),
    ],
)
def test_bad_request(request_b64: str, problem: str) -> None:
    with pytest.raises(ChallengeError, match="'request'") as info:
        parse_challenges(_header(request=request_b64))
    assert problem in str(info.value)


def test_request_nesting_within_limit_is_accepted() -> None:
    deep = '{"a":' + "[" * 60 + "]" * 60 + "}"
    assert _one(_header(request=_b64json(deep))).request == json.loads(deep)


@pytest.mark.parametrize(
    "opaque",
    [
        _b64json('{"a":1}'),
        _b64json('{"a":{"b":"c"}}'),
        _b64json('{"a":null}'),
        _b64json('["a"]'),
        _b64json('"a"'),
        "trace-123",
        "e30=",
    ],
)
def test_bad_opaque(opaque: str) -> None:
    with pytest.raises(ChallengeError, match="'opaque'"):
        parse_challenges(_header(opaque=opaque))


def test_empty_opaque_object_is_accepted() -> None:
    ch = _one(_header(opaque="e30"))
    assert ch.opaque == {}
    assert ch.opaque_b64 == "e30"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-01-06T12:00:00Z", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2025-01-06T12:00:00z", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2025-01-06t12:00:00Z", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2025-01-06T12:00:00+00:00", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2025-01-06T12:00:00-00:00", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2025-01-06T14:30:00+02:30", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2025-01-06T07:00:00-05:00", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2025-01-06T12:00:00.123Z", datetime(2025, 1, 6, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2025-01-06T12:00:00.123456Z", datetime(2025, 1, 6, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2025-01-06T12:00:00.123456789Z", datetime(2025, 1, 6, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2025-01-06T12:00:00.5+00:00", datetime(2025, 1, 6, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2025-01-06 12:00:00Z", datetime(2025, 1, 6, 12, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_expires_forms(raw: str, expected: datetime) -> None:
    ch = _one(_header(expires=raw))
    assert ch.expires == expected
    assert ch.expires is not None
    assert ch.expires.utcoffset() == timedelta(0)
    # The raw string is what the server bound into the id: kept verbatim.
    assert ch.expires_raw == raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "tomorrow",
        "1736164800",
        "2025-01-06",
        "2025-01-06T12:00:00",  # no offset
        "2025-01-06T12:00Z",
        "2025-1-6T12:00:00Z",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "2025-01-06T24:00:00Z",
        "2025-01-06T12:00:00+24:00",
        "2025-01-06T12:00:00+0200",
        "2025-01-06T12:00:00.Z",
        "0000-01-01T00:00:00Z",
        " 2025-01-06T12:00:00Z",
        # Out of datetime's range once converted to UTC.
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        # RFC 3339 digits are ASCII.
        "٢٠٢٥-٠١-٠٦T١٢:٠٠:٠٠Z",
        "２０２５-01-06T12:00:00Z",
    ],
)
def test_bad_expires(raw: str) -> None:
    with pytest.raises(ChallengeError, match="'expires'"):
        parse_challenges(_header(expires=raw))


@pytest.mark.parametrize("value", [None, 0, 1736164800, b"2025-01-06T12:00:00Z", {}, []])
def test_parse_rfc3339_refuses_non_strings_with_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(value)


def test_is_expired() -> None:
    ch = _one(_header(expires="2025-01-06T12:00:00Z"))
    at = datetime(2025, 1, 6, 12, tzinfo=UTC)
    assert not ch.is_expired(at)
    assert not ch.is_expired(at + timedelta(seconds=20), skew_seconds=30)
    assert ch.is_expired(at + timedelta(seconds=31), skew_seconds=30)
    assert ch.is_expired(at + timedelta(seconds=1))
    assert not _one(PAYMENT).is_expired(at + timedelta(days=10_000))


def test_payment_authorization_header() -> None:
    ch = _one(_header(header="Payment-Authorization"))
    assert ch.header == PAYMENT_AUTHORIZATION
    assert ch.credential_header == "Payment-Authorization"
    assert format_challenge(ch).endswith('header="Payment-Authorization"')


def test_header_name_is_kept_as_received() -> None:
    # The server binds the header string into the challenge id, so the echo
    # must carry the very string it sent, whatever its case.
    ch = _one(_header(header="payment-authorization"))
    assert ch.header == "payment-authorization"
    assert ch.credential_header == "payment-authorization"
    assert 'header="payment-authorization"' in format_challenge(ch)
    assert Credential.for_challenge(ch, {}).echo["header"] == "payment-authorization"


@pytest.mark.parametrize("value", ["Authorization", "authorization", "AUTHORIZATION"])
def test_authorization_header_is_the_default(value: str) -> None:
    ch = _one(_header(header=value))
    assert ch.header is None
    assert ch.credential_header == AUTHORIZATION
    assert "header" not in Credential.for_challenge(ch, {}).echo


@pytest.mark.parametrize("value", ["Cookie", "X-Payment", "", "Proxy-Authorization"])
def test_unsupported_header(value: str) -> None:
    with pytest.raises(ChallengeError, match="unsupported header"):
        parse_challenges(_header(header=value))


@pytest.mark.parametrize(
    "value",
    [
        PAYMENT + ', id="b"',
        PAYMENT + ", ID=b",
        PAYMENT + ', foo="1", foo="2"',
        PAYMENT + ', realm="r"',
    ],
)
def test_duplicate_param(value: str) -> None:
    with pytest.raises(ChallengeError, match="repeats the parameter"):
        parse_challenges(value)


def test_token68_instead_of_params() -> None:
    with pytest.raises(ChallengeError, match="token68"):
        parse_challenges("Payment eyJhIjoxfQ")


def test_unterminated_known_param() -> None:
    with pytest.raises(ChallengeError, match="unterminated quoted value for 'description'"):
        parse_challenges(PAYMENT + ', description="never closed')


def test_broken_challenge_next_to_a_valid_one() -> None:
    value = _header(id="bad", method="Bad.Method") + ", " + _header(id="good")
    with pytest.raises(ChallengeError, match="invalid method"):
        parse_challenges(value)
    good, bad = parse_challenges_lenient(value)
    assert [c.id for c in good] == ["good"]
    assert len(bad) == 1
    assert isinstance(bad[0], ChallengeError)
    assert "invalid method" in str(bad[0])
    # Across several values too.
    good, bad = parse_challenges_lenient([_header(id="x", request="W10"), _header(id="y")])
    assert [c.id for c in good] == ["y"]
    assert len(bad) == 1
    assert "'request'" in str(bad[0])


def test_lenient_without_payment_challenges() -> None:
    assert parse_challenges_lenient('Basic realm="x"') == ([], [])


def test_size_limit() -> None:
    base = _header(description="")
    at_limit = _header(description="x" * (MAX_CHALLENGE_BYTES - len(base)))
    assert len(at_limit) == MAX_CHALLENGE_BYTES
    assert _one(at_limit).id == "a"
    over = _header(description="x" * (MAX_CHALLENGE_BYTES - len(base) + 1))
    with pytest.raises(ChallengeError, match="byte limit"):
        parse_challenges(over)
    with pytest.raises(ChallengeError, match="byte limit"):
        parse_challenges_lenient(over)
    # The limit is on all values together.
    half = "x" * (MAX_CHALLENGE_BYTES // 2)
    with pytest.raises(ChallengeError, match="byte limit"):
        parse_challenges([PAYMENT, f'Basic realm="{half}"', f'Basic realm="{half}"'])


@pytest.mark.parametrize(
    "value",
    [
        PAYMENT.encode(),
        bytearray(PAYMENT.encode()),
        0,
        1.5,
        None,
        object(),
        [PAYMENT, 1],
        [PAYMENT, None],
        [PAYMENT.encode()],
        [[PAYMENT]],
    ],
    ids=repr,
)
def test_wrong_types(value: Any) -> None:
    with pytest.raises(ChallengeError):
        parse_challenges(value)
    with pytest.raises(ChallengeError):
        parse_challenges_lenient(value)


# --------------------------------------------------------------------------- #
# format_challenge / Challenge.create
# --------------------------------------------------------------------------- #


def test_format_round_trip_with_every_field() -> None:
    ch = Challenge.create(
        id="ch_1",
        realm='api "example" \\ com',
        method="tempo",
        intent="charge",
        request={"amount": "1", "b": [1, 2.5, None], "a": {"z": True}},
        expires=datetime(2026, 1, 29, 12, 5, tzinfo=UTC),
        digest="sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        description="Café ☕ \U0001f600",
        opaque={"route": "/x"},
        header="Payment-Authorization",
    )
    assert ch.expires_raw == "2026-01-29T12:05:00Z"
    assert ch.request_b64 == b64url_encode(canonical_json(ch.request))
    text = format_challenge(ch)
    assert text == ch.to_header()
    # Above U+00FF everything is escaped, so the header is ISO-8859-1.
    text.encode("latin-1")
    assert "\\u2615" in text
    assert "\\ud83d\\ude00" in text
    back = _one(text)
    for name in (
        "id",
        "realm",
        "method",
        "intent",
        "request",
        "request_b64",
        "expires",
        "expires_raw",
        "digest",
        "description",
        "opaque",
        "opaque_b64",
        "header",
    ):
        assert getattr(back, name) == getattr(ch, name), name


def test_create_normalizes_authorization_header() -> None:
    ch = Challenge.create(
        id="a", realm="r", method="m", intent="charge", request={}, header="authorization"
    )
    assert ch.header is None
    assert "header=" not in format_challenge(ch)


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\r\nb", "a\x00b", "a\x1bb", "a\x7fb"])
@pytest.mark.parametrize("field", ["id", "realm", "description"])
def test_format_refuses_control_characters(field: str, bad: str) -> None:
    values: dict[str, Any] = {
        "id": "a",
        "realm": "r",
        "method": "m",
        "intent": "charge",
        "request": {},
        field: bad,
    }
    with pytest.raises(ChallengeError, match=f"'{field}'"):
        format_challenge(Challenge.create(**values))


def test_format_allows_tab() -> None:
    ch = Challenge.create(
        id="a", realm="r", method="m", intent="charge", request={}, description="a\tb"
    )
    assert _one(format_challenge(ch)).description == "a\tb"


def test_challenge_repr_is_short() -> None:
    ch = _one(_header(description="secret-ish description", request=_b64json('{"k":"v"}')))
    text = repr(ch)
    assert "Challenge(id='a'" in text
    assert "description" not in text
    assert '"k"' not in text


# --------------------------------------------------------------------------- #
# Credential
# --------------------------------------------------------------------------- #

# Deliberately not canonical: keys unsorted, spaces after separators.
RAW_REQUEST_JSON = '{"recipient": "0xabc", "amount": "1000", "currency": "USD"}'
RAW_REQUEST_B64 = _b64json(RAW_REQUEST_JSON)
RAW_OPAQUE_B64 = _b64json('{ "z": "1",  "a": "2" }')


def _rich_challenge() -> Challenge:
    return _one(
        _header(
            id="ch_rich",
            request=RAW_REQUEST_B64,
            opaque=RAW_OPAQUE_B64,
            description="Pay up",
            digest="sha-256=abc",
            expires="2026-01-29T12:05:00.5+00:00",
            header="Payment-Authorization",
        )
    )


def test_for_challenge_echoes_wire_strings_byte_for_byte() -> None:
    ch = _rich_challenge()
    assert RAW_REQUEST_B64 != b64url_encode(canonical_json(ch.request))
    credential = Credential.for_challenge(ch, {"signature": "0x1"}, source="did:key:z6Mk")
    assert credential.echo == {
        "id": "ch_rich",
        "realm": "r",
        "method": "m",
        "intent": "charge",
        "request": RAW_REQUEST_B64,
        "opaque": RAW_OPAQUE_B64,
        "description": "Pay up",
        "digest": "sha-256=abc",
        "expires": "2026-01-29T12:05:00.5+00:00",
        "header": "Payment-Authorization",
    }
    assert credential.challenge_id == "ch_rich"
    # And on the wire too.
    token = credential.to_header().removeprefix("Payment ")
    wire = b64url_decode_json(token)
    assert wire["challenge"]["request"] == RAW_REQUEST_B64
    assert wire["challenge"]["opaque"] == RAW_OPAQUE_B64
    assert wire["payload"] == {"signature": "0x1"}
    assert wire["source"] == "did:key:z6Mk"


def test_for_challenge_omits_absent_optional_fields() -> None:
    credential = Credential.for_challenge(_one(PAYMENT), {})
    assert credential.echo == {
        "id": "a",
        "realm": "r",
        "method": "m",
        "intent": "charge",
        "request": "e30",
    }
    wire = b64url_decode_json(credential.to_header().removeprefix("Payment "))
    assert wire == {"challenge": dict(credential.echo), "payload": {}}
    assert "source" not in wire


@pytest.mark.parametrize("field", ["description", "digest", "expires", "opaque", "header"])
def test_for_challenge_includes_each_optional_field_alone(field: str) -> None:
    values = {
        "description": "d",
        "digest": "sha-256=abc",
        "expires": "2026-01-29T12:05:00Z",
        "opaque": "e30",
        "header": "Payment-Authorization",
    }
    echo = Credential.for_challenge(_one(_header(**{field: values[field]})), {}).echo
    assert set(echo) == {"id", "realm", "method", "intent", "request", field}
    assert echo[field] == values[field]


def test_credential_repr_hides_payload() -> None:
    credential = Credential.for_challenge(
        _one(PAYMENT), {"signature": "0xdeadbeefsecret", "key": "hunter2"}, source="did:x"
    )
    text = repr(credential)
    assert "0xdeadbeefsecret" not in text
    assert "hunter2" not in text
    assert "signature" not in text
    assert "challenge_id='a'" in text
    assert "redacted" in text


def test_credential_round_trip() -> None:
    credential = Credential.for_challenge(
        _rich_challenge(),
        {"type": "transaction", "n": [1, 2.5, None, True], "text": "é ☕ \U0001f600"},
        source="did:pkh:eip155:1:0xabc",
    )
    header = credential.to_header()
    assert header.startswith("Payment ")
    back = Credential.parse(header)
    assert back.echo == credential.echo
    assert back.payload == credential.payload
    assert back.source == credential.source
    # Either credential header name works, and the scheme is case-insensitive.
    assert Credential.parse("payment " + header.removeprefix("Payment ")).echo == credential.echo
    assert Credential.parse("  " + header + "  ").echo == credential.echo


def test_credential_to_header_refuses_unserializable_payload() -> None:
    credential = Credential.for_challenge(_one(PAYMENT), {"secret": {"hunter2", "x"}})
    with pytest.raises(ProtocolError, match="not JSON-serializable") as info:
        credential.to_header()
    assert "hunter2" not in str(info.value)
    credential = Credential.for_challenge(_one(PAYMENT), {"x": float("nan")})
    with pytest.raises(ProtocolError):
        credential.to_header()


def _credential_token(data: Any) -> str:
    return "Payment " + _b64json(json.dumps(data))


_GOOD_ECHO = {"id": "a", "realm": "r", "method": "m", "intent": "charge", "request": "e30"}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"Payment e30", "must be a string"),
        (None, "must be a string"),
        ("", "Payment scheme"),
        ("Payment", "Payment scheme"),
        ("Payment ", "Payment scheme"),
        ("Bearer e30", "Payment scheme"),
        ("Payment e30=", "base64url"),
        ("Payment !!!", "base64url"),
        ("Payment W10", "JSON object"),
        (_credential_token({"payload": {}}), "'challenge'"),
        (_credential_token({"challenge": "x", "payload": {}}), "'challenge'"),
        (_credential_token({"challenge": {**_GOOD_ECHO, "id": ""}, "payload": {}}), "empty"),
        (_credential_token({"challenge": {**_GOOD_ECHO, "id": 1}, "payload": {}}), "'id'"),
        (
            _credential_token({"challenge": {**_GOOD_ECHO, "method": "Tem.po"}, "payload": {}}),
            "invalid method",
        ),
        (
            _credential_token({"challenge": {**_GOOD_ECHO, "expires": 5}, "payload": {}}),
            "'expires'",
        ),
        (_credential_token({"challenge": _GOOD_ECHO}), "'payload'"),
        (_credential_token({"challenge": _GOOD_ECHO, "payload": []}), "'payload'"),
        (_credential_token({"challenge": _GOOD_ECHO, "payload": {}, "source": 1}), "'source'"),
        ("Payment " + "A" * MAX_CREDENTIAL_BYTES, "byte limit"),
    ],
)
def test_credential_parse_errors(value: Any, problem: str) -> None:
    with pytest.raises(ProtocolError) as info:
        Credential.parse(value)
    assert problem in str(info.value)


@pytest.mark.parametrize("name", ["id", "realm", "method", "intent", "request"])
def test_credential_parse_missing_echo_field(name: str) -> None:
    echo = {k: v for k, v in _GOOD_ECHO.items() if k != name}
    with pytest.raises(ProtocolError, match=f"'{name}'"):
        Credential.parse(_credential_token({"challenge": echo, "payload": {}}))


# --------------------------------------------------------------------------- #
# Receipt and Problem
# --------------------------------------------------------------------------- #


def _receipt(**fields: Any) -> str:
    data = {
        "status": "success",
        "method": "tempo",
        "reference": "0xabc",
        "timestamp": "2026-01-29T12:05:00Z",
    }
    data.update(fields)
    return _b64json(json.dumps({k: v for k, v in data.items() if v is not None}))


def test_receipt_parse() -> None:
    receipt = Receipt.parse(_receipt(extra={"block": 7}))
    assert receipt.status == "success"
    assert receipt.method == "tempo"
    assert receipt.reference == "0xabc"
    assert receipt.timestamp == datetime(2026, 1, 29, 12, 5, tzinfo=UTC)
    assert receipt.data["extra"] == {"block": 7}
    assert Receipt.parse("  " + _receipt() + " ").reference == "0xabc"
    assert Receipt.parse(_receipt(timestamp=None)).timestamp is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (_receipt(status=None), "status"),
        (_receipt(status="failed"), "status"),
        (_receipt(status="SUCCESS"), "status"),
        (_receipt(method=None), "'method'"),
        (_receipt(method=""), "'method'"),
        (_receipt(method=5), "'method'"),
        (_receipt(reference=None), "'reference'"),
        (_receipt(reference=""), "'reference'"),
        (_receipt(timestamp="yesterday"), "'timestamp'"),
        (_receipt(timestamp=1736164800), "'timestamp'"),
        (_receipt(timestamp={}), "'timestamp'"),
        (_receipt(timestamp=["2026-01-29T12:05:00Z"]), "'timestamp'"),
        (_receipt() + "=", "base64url"),
        ("not base64!", "base64url"),
        ("", "base64url"),
        ("W10", "JSON object"),
        (b"eyJ9", "must be a string"),
        ("A" * (16 * 1024 + 1), "byte limit"),
    ],
)
def test_receipt_parse_errors(value: Any, problem: str) -> None:
    with pytest.raises(ProtocolError) as info:
        Receipt.parse(value)
    assert problem in str(info.value)


def test_receipt_with_overflowing_number_is_refused() -> None:
    # It would decode to infinity, which could never be re-encoded (to_header).
    with pytest.raises(ProtocolError, match="range of a double"):
        Receipt.parse(_b64json('{"status":"success","method":"m","reference":"x","n":1e999}'))


def test_receipt_to_header_round_trip() -> None:
    receipt = Receipt(
        status="success",
        method="tempo",
        reference="0xabc",
        timestamp=datetime(2026, 1, 29, 12, 5, 0, 250000, tzinfo=UTC),
        data={"extra": "é", "status": "overridden"},
    )
    header = receipt.to_header()
    # JCS, so the same receipt always has the same bytes.
    assert b64url_decode(header) == canonical_json(b64url_decode_json(header))
    back = Receipt.parse(header)
    assert (back.status, back.method, back.reference, back.timestamp) == (
        "success",
        "tempo",
        "0xabc",
        receipt.timestamp,
    )
    assert back.data["extra"] == "é"
    assert back.data["timestamp"] == "2026-01-29T12:05:00.250000Z"


def test_problem_parse() -> None:
    body = json.dumps(
        {
            "type": PROBLEM_BASE + "verification-failed",
            "title": "Verification failed",
            "status": 402,
            "detail": "bad signature",
            "extra": 1,
        }
    ).encode()
    problem = Problem.parse(body, "application/problem+json; charset=utf-8")
    assert problem is not None
    assert problem.code == "verification-failed"
    assert problem.title == "Verification failed"
    assert problem.status == 402
    assert problem.detail == "bad signature"
    assert problem.data["extra"] == 1
    # Text bodies and plain application/json work too; no content type means "try".
    assert Problem.parse(body.decode(), "application/json") is not None
    assert Problem.parse(body) is not None


def test_problem_code_only_for_the_payment_namespace() -> None:
    foreign = Problem.parse(b'{"type": "https://example.com/problems/x"}')
    assert foreign is not None
    assert foreign.code is None
    blank = Problem.parse(b'{"title": "t", "status": true, "detail": 5}')
    assert blank is not None
    assert blank.type == "about:blank"
    assert blank.code is None
    assert blank.status is None
    assert blank.detail is None
    bare = Problem.parse(json.dumps({"type": PROBLEM_BASE}).encode())
    assert bare is not None
    assert bare.code is None


def test_problem_build_round_trip() -> None:
    built = Problem.build("payment-expired", title="Expired", detail="too late")
    back = Problem.parse(built.to_json(), "application/problem+json")
    assert back is not None
    assert back.code == "payment-expired"
    assert (back.status, back.title, back.detail) == (402, "Expired", "too late")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", "application/problem+json"),
        (b"<html>402</html>", "text/html"),
        (b'{"type": "x"}', "text/html"),
        (b'{"type": "x"}', "text/plain"),
        (b"[1, 2]", "application/problem+json"),
        (b'"string"', "application/problem+json"),
        (b"null", None),
        (b"", "application/problem+json"),
        (b"\xff\xfe", "application/problem+json"),
        (b'{"a": 1, "a": 2}', "application/problem+json"),
        (b'{"a": NaN}', "application/problem+json"),
        (b'{"a": 1e999}', "application/problem+json"),
        (b"{" + b" " * (64 * 1024) + b"}", "application/problem+json"),
    ],
)
def test_problem_parse_not_a_problem(body: bytes, content_type: str | None) -> None:
    assert Problem.parse(body, content_type) is None


# --------------------------------------------------------------------------- #
# Content digests
# --------------------------------------------------------------------------- #

BODY = b'{"prompt": "hello"}'
SHA256 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
SHA512 = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
OTHER256 = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
OTHER512 = base64.b64encode(hashlib.sha512(b"other").digest()).decode()


def test_content_digest() -> None:
    # sha-256("hello"), a well-known value.
    assert content_digest(b"hello") == "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:"
    assert content_digest(BODY) == f"sha-256=:{SHA256}:"
    assert content_digest(BODY, "sha-512") == f"sha-512=:{SHA512}:"
    with pytest.raises(ValueError):
        content_digest(BODY, "md5")


@pytest.mark.parametrize(
    "value",
    [
        f"sha-256=:{SHA256}:",
        f"sha-256={SHA256}",
        f"sha-256={SHA256.rstrip('=')}",
        f"SHA-256=:{SHA256}:",
        f"  sha-256 = :{SHA256}:  ",
        f"sha-256={SHA256.replace('+', '-').replace('/', '_')}",
        f"sha-512=:{SHA512}:",
        f"sha-512={SHA512.rstrip('=')}",
        f"sha-256=:{SHA256}:, sha-512=:{SHA512}:",
        f"sha-512={SHA512},sha-256={SHA256}",
        f"md5=:AAAA:, sha-256=:{SHA256}:",
    ],
)
def test_digest_matches(value: str) -> None:
    assert digest_matches(value, BODY)
    assert not digest_matches(value, BODY + b" ")


def test_digest_mismatch() -> None:
    assert not digest_matches(f"sha-256=:{OTHER256}:", BODY)
    # Every known digest must match, not just one.
    assert not digest_matches(f"sha-256=:{SHA256}:, sha-512=:{OTHER512}:", BODY)
    assert not digest_matches(f"sha-512=:{SHA512}:, sha-256=:{OTHER256}:", BODY)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("md5=:AAAA:", "no supported algorithm"),
        ("unknown=abc, other=def", "no supported algorithm"),
        ("", "algorithm=value"),
        ("sha-256", "algorithm=value"),
        ("sha-256=:!!!!:", "sha-256 digest"),
        ("sha-512=", "sha-512 digest"),
        ("sha-256=:AAAA:", "wrong length"),
        (f"sha-512=:{SHA256}:", "wrong length"),
    ],
)
def test_digest_errors(value: str, problem: str) -> None:
    with pytest.raises(ChallengeError) as info:
        digest_matches(value, BODY)
    assert problem in str(info.value)


# --------------------------------------------------------------------------- #
# Accept-Payment
# --------------------------------------------------------------------------- #


def test_accept_payment_order_and_q() -> None:
    header = format_accept_payment(
        [
            ("tempo", "charge", 1),
            ("stripe", "charge", "0.5"),
            ("x402", "*", 0.25),
            ("*", "session", "0.125"),
            ("dev", "charge", 0),
            ("vendor:method", "authorize", "1.000"),
            ("b", "c", "0.500"),
            ("a", "b", 1.0),
        ]
    )
    assert header == (
        "tempo/charge, stripe/charge;q=0.5, x402/*;q=0.25, */session;q=0.125, "
        "dev/charge;q=0, vendor:method/authorize, b/c;q=0.5, a/b"
    )
    assert format_accept_payment([]) == ""


@pytest.mark.parametrize(
    "q", [1.5, 2, -0.5, -1, "0.1234", "abc", "", "1.001", "0.a", "0.٥", True, 1e-05]
)
def test_accept_payment_invalid_q(q: Any) -> None:
    with pytest.raises(ValueError, match="q must be"):
        format_accept_payment([("tempo", "charge", q)])


@pytest.mark.parametrize(
    ("method", "intent"), [("Tempo", "charge"), ("tem po", "charge"), ("", "charge"), ("t", "a b")]
)
def test_accept_payment_invalid_names(method: str, intent: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        format_accept_payment([(method, intent, 1)])


# --------------------------------------------------------------------------- #
# Canonical JSON
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [1, 2.5, None, True, False]}, b'{"a":[1,2.5,null,true,false],"b":1}'),
        ({"\U0001f600": 1, "\uffff": 2}, '{"\U0001f600":1,"\uffff":2}'.encode()),
        ({"é": "<&>"}, '{"é":"<&>"}'.encode()),
        ([1e21, 1e-7, 0.1, -0.0, 100.0, 123e-20], b"[1e+21,1e-7,0.1,0,100,1.23e-18]"),
        ("\u2028\x7f\x1f\n", b'"\xe2\x80\xa8\x7f\\u001f\\n"'),
    ],
)
def test_canonical_json_examples(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected
    assert rfc8785.dumps(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1: "x"}, {"a": object()}, b"x"])
def test_canonical_json_refuses(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json(value)


_SAFE_INT = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
_JSON_SCALAR = (
    st.none()
    | st.booleans()
    | _SAFE_INT
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_JSON = st.recursive(
    _JSON_SCALAR,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(_JSON)
def test_canonical_json_matches_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


# --------------------------------------------------------------------------- #
# Properties: nothing but ChallengeError on hostile input
# --------------------------------------------------------------------------- #

_FRAGMENTS = st.sampled_from(
    [
        "Payment",
        "payment",
        "Basic",
        " ",
        "\t",
        ",",
        "=",
        '"',
        "\\",
        "\\u",
        "\\ud83d",
        "\\ude00",
        "00e9",
        "id",
        "realm",
        "method",
        "intent",
        "request",
        "expires",
        "digest",
        "opaque",
        "header",
        "description",
        "e30",
        "W10",
        "eyJhIjoxfQ",
        "tempo",
        "charge",
        "Payment-Authorization",
        "2025-01-06T12:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "YQ==",
        "é",
        "\U0001f600",
        "\x00",
        "\r\n",
    ]
)
_HEADERISH = st.lists(_FRAGMENTS | st.text(max_size=5), max_size=40).map("".join)
_HOSTILE_TEXT = st.text() | _HEADERISH | _HEADERISH.map(lambda s: PAYMENT + s)


def _only_challenge_errors(value: Any) -> None:
    for parse in (parse_challenges, parse_challenges_lenient):
        try:
            parse(value)
        except ChallengeError:
            pass


@settings(max_examples=500, deadline=None)
@given(_HOSTILE_TEXT)
def test_arbitrary_text_raises_only_challenge_error(value: str) -> None:
    _only_challenge_errors(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(_HOSTILE_TEXT, max_size=5))
def test_arbitrary_lists_raise_only_challenge_error(values: list[str]) -> None:
    _only_challenge_errors(values)


@settings(max_examples=300, deadline=None)
@given(st.binary() | st.binary().map(lambda b: PAYMENT.encode() + b))
def test_arbitrary_latin1_raises_only_challenge_error(raw: bytes) -> None:
    _only_challenge_errors(raw.decode("latin-1"))


@settings(max_examples=300, deadline=None)
@given(_HOSTILE_TEXT)
def test_parse_rfc3339_raises_only_value_error(value: str) -> None:
    try:
        parsed = parse_rfc3339(value)
    except ValueError:
        return
    assert parsed.utcoffset() == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(_HOSTILE_TEXT | st.text(alphabet="ABCDEFabcdef0123456789-_=+/!"))
def test_credential_and_receipt_parse_raise_only_protocol_error(value: str) -> None:
    for parse in (Credential.parse, Receipt.parse):
        try:
            parse(value)
        except ProtocolError:
            pass
    for token in (value, "Payment " + b64url_encode(value)):
        try:
            Credential.parse(token)
        except ProtocolError:
            pass
    try:
        Receipt.parse(b64url_encode(value))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary() | _HOSTILE_TEXT.map(str.encode), st.sampled_from([None, "application/json"]))
def test_problem_parse_never_raises(body: bytes, content_type: str | None) -> None:
    result = Problem.parse(body, content_type)
    assert result is None or isinstance(result.type, str)


# --------------------------------------------------------------------------- #
# Properties: format -> parse round trip, base64url
# --------------------------------------------------------------------------- #

# Formatting refuses control characters (header injection); tab is allowed.
_VALUE_TEXT = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), include_characters='\t"\\'), max_size=40
)
_REQUEST = st.dictionaries(st.text(max_size=10), _JSON, max_size=5)


@st.composite
def _challenges(draw: Callable[..., Any]) -> Challenge:
    expires = draw(st.none() | st.datetimes(timezones=st.just(UTC)))
    return Challenge.create(
        id=draw(_VALUE_TEXT.filter(bool)),
        realm=draw(_VALUE_TEXT),
        method=draw(st.from_regex(r"[a-z][a-z0-9:_-]{0,15}", fullmatch=True)),
        intent=draw(st.from_regex(r"[A-Za-z0-9-]{1,16}", fullmatch=True)),
        request=draw(_REQUEST),
        expires=expires,
        digest=draw(st.none() | _VALUE_TEXT),
        description=draw(st.none() | _VALUE_TEXT),
        opaque=draw(st.none() | st.dictionaries(st.text(max_size=10), st.text(max_size=10))),
        header=draw(st.sampled_from([None, "Payment-Authorization", "Authorization"])),
    )


_FIELDS = (
    "id",
    "realm",
    "method",
    "intent",
    "request",
    "request_b64",
    "expires",
    "expires_raw",
    "digest",
    "description",
    "opaque",
    "opaque_b64",
    "header",
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_challenges(), st.sampled_from(["", 'Basic realm="x", ', "Bearer abc, "]))
def test_format_parse_round_trip(challenge: Challenge, before: str) -> None:
    text = format_challenge(challenge)
    text.encode("latin-1")  # never anything above U+00FF on the wire
    parsed = _one(before + text + ", Basic YQ==")
    for name in _FIELDS:
        if name == "request":
            # JSON has one number type: an integral float above 2**53 comes back
            # as the int it denotes, so compare the JSON values, not the Python ones.
            assert canonical_json(parsed.request) == canonical_json(challenge.request)
        else:
            assert getattr(parsed, name) == getattr(challenge, name), name
    # The credential echoes exactly what was received.
    echo = Credential.for_challenge(parsed, {}).echo
    assert echo["request"] == challenge.request_b64
    assert echo.get("opaque") == challenge.opaque_b64


@settings(max_examples=500, deadline=None)
@given(st.binary())
def test_b64url_round_trip(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert "=" not in encoded
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert b64url_decode(encoded) == data
    assert encoded == base64.urlsafe_b64encode(data).decode().rstrip("=")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_b64url_text_round_trip(text: str) -> None:
    assert b64url_decode_text(b64url_encode(text)) == text


@settings(max_examples=500, deadline=None)
@given(st.text() | st.text(alphabet="ABCDabcd0123-_=+/ ") | st.from_regex(r"[A-Za-z0-9_-]*"))
def test_b64url_decode_raises_only_base64_error(value: str) -> None:
    for decode in (b64url_decode, b64url_decode_text, b64url_decode_json):
        try:
            decode(value)
        except Base64Error:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_b64url_decoding_is_canonical(data: bytes) -> None:
    # Exactly one accepted spelling per value: the decoder refuses any other.
    encoded = b64url_encode(data)
    for variant in (encoded + "=", encoded + "A", base64.b64encode(data).decode()):
        if variant == encoded:
            continue
        try:
            decoded = b64url_decode(variant)
        except Base64Error:
            continue
        assert b64url_encode(decoded) == variant


# --------------------------------------------------------------------------- #
# Linear time on pathological headers
# --------------------------------------------------------------------------- #

_PREFIX = 'Payment id="a", realm="r", method="m", intent="charge", request="e30", '


_PROTOCOL_DIR = str(Path(mpp_client.protocol.__file__).parent)


def _work(header: str) -> int:
    """How many steps parsing ``header`` takes: a count, not a time.

    Every Python line executed in ``mpp_client.protocol`` and every call it
    makes into C (a regex match, a slice) is one step. Unlike a timing, the
    count does not depend on the machine or its load; a parser that loops
    back over its input shows up as steps growing faster than the input.
    (Wall-clock growth is measured in benchmarks/protocol_parse.py.)
    """
    steps = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        if not frame.f_code.co_filename.startswith(_PROTOCOL_DIR):
            return None  # do not trace into other code
        if event == "line":
            steps += 1
        return tracer

    def profiler(frame: Any, event: str, arg: Any) -> None:
        nonlocal steps
        if event == "c_call" and frame.f_code.co_filename.startswith(_PROTOCOL_DIR):
            steps += 1

    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        parse_challenges(header)
    except ChallengeError:
        pass
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    return steps


# Each builds a header of about ``n`` pathological characters.
_PATHOLOGICAL: dict[str, Callable[[int], str]] = {
    "backslashes_unclosed": lambda n: _PREFIX + 'x="' + "\\" * n,
    "escaped_quotes_unclosed": lambda n: _PREFIX + 'x="' + '\\"' * (n // 2),
    "escaped_quotes_closed": lambda n: _PREFIX + 'x="' + '\\"' * (n // 2) + '"',
    "bare_quotes_after_value": lambda n: _PREFIX + "x=a" + '"' * n,
    "unicode_escapes": lambda n: _PREFIX + 'description="' + "\\ud83d" * (n // 6) + '"',
    "separators": lambda n: _PREFIX + ", \t" * (n // 3),
    "bare_tokens": lambda n: _PREFIX + "a " * (n // 2),
    "equals_signs": lambda n: _PREFIX + "x" + "=" * n,
    "garbage_no_comma": lambda n: _PREFIX + "x=a" + " (" * (n // 2),
    "nested_json": lambda n: _PREFIX.replace('"e30"', '"' + _b64json("[" * (n * 3 // 4)) + '"'),
}


@pytest.mark.parametrize("shape", sorted(_PATHOLOGICAL))
def test_parsing_is_linear(shape: str) -> None:
    build = _PATHOLOGICAL[shape]
    small, large = build(2_000), build(16_000)
    assert len(large) <= MAX_CHALLENGE_BYTES
    assert len(large) > 7 * len(small)
    ratio = _work(large) / max(_work(small), 1)
    # 8x the input: linear work grows about 8x (less, with fixed costs), quadratic 64x.
    assert ratio < 12, f"{shape}: parsing 8x more input took {ratio:.1f}x more steps"


def test_pathological_backslashes_still_parse() -> None:
    ch = _one(_PATHOLOGICAL["backslashes_unclosed"](16_000))
    assert (ch.id, ch.realm, ch.request) == ("a", "r", {})
    assert "x" not in ch.params
