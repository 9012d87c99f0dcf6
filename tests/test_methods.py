from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from mpp_client import Amount, ChallengeError, DevWallet
from mpp_client._didkey import did_key_from_public, public_from_did_key
from mpp_client.methods.dev import verify_voucher
from mpp_client.protocol import Challenge

from .helpers import apay_now, pay_now

ROOT = Path(__file__).resolve().parents[1]


def dev_challenge(**request: object) -> Challenge:
    body = {"amount": "25", "currency": "usd", "recipient": "m"}
    body.update(request)
    return Challenge.create(id="c1", realm="r", method="dev", intent="charge", request=body)


def test_quote_reads_the_request() -> None:
    quote = DevWallet().quote(dev_challenge())
    assert quote.amount == Amount(25, "USD", 2)
    assert quote.payee == "m" and quote.currency == "usd" and quote.method == "dev"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"currency": "eur"}, "pays 'usd'"),
        ({"recipient": None}, "recipient"),
        ({"amount": "01"}, "digits"),
        ({"amount": ""}, "digits"),
        ({"currency": 5}, "currency"),
        ({"methodDetails": []}, "methodDetails"),
        ({"expires": "tomorrow"}, "RFC 3339"),
    ],
)
def test_quote_refuses_bad_terms(request_: dict[str, object], message: str) -> None:
    challenge = dev_challenge(**request_)
    if request_.get("recipient", "x") is None:
        body = {k: v for k, v in challenge.request.items() if k != "recipient"}
        challenge = Challenge.create(id="c", realm="r", method="dev", intent="charge", request=body)
    with pytest.raises(ChallengeError, match=message):
        DevWallet().quote(challenge)


def test_voucher_binds_the_exact_challenge() -> None:
    wallet = DevWallet(bytes(32))
    challenge = dev_challenge()
    payload = dict(pay_now(wallet, challenge))
    echo = {
        "id": challenge.id,
        "realm": challenge.realm,
        "method": "dev",
        "intent": "charge",
        "request": challenge.request_b64,
    }
    assert verify_voucher(echo, payload) == wallet.source
    for field, value in [("id", "c2"), ("realm", "x"), ("request", "e30")]:
        with pytest.raises(ValueError, match="does not verify"):
            verify_voucher({**echo, field: value}, payload)
    other = DevWallet(bytes([1]) * 32)
    with pytest.raises(ValueError, match="does not verify"):
        verify_voucher(echo, {**payload, "payer": other.source})
    with pytest.raises(ValueError):
        verify_voucher(echo, {**payload, "payer": "did:web:example.com"})
    with pytest.raises(ValueError):
        verify_voucher(echo, {"type": "flag", "paid": True})


async def test_apay_matches_pay() -> None:
    wallet = DevWallet(bytes(32))
    challenge = dev_challenge()
    assert await apay_now(wallet, challenge) == pay_now(wallet, challenge)


def test_seeded_wallet_is_stable_and_keeps_its_key_out_of_repr() -> None:
    seed = bytes(range(32))
    assert DevWallet(seed).source == DevWallet(seed).source
    assert DevWallet().source != DevWallet().source
    assert seed.hex() not in repr(DevWallet(seed))
    assert repr(DevWallet(seed)).startswith("<DevWallet source='did:key:z6Mk")


def test_did_key_round_trip_and_known_vector() -> None:
    # W3C did:key test vector for an Ed25519 key.
    did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    public = public_from_did_key(did)
    assert len(public) == 32
    assert did_key_from_public(public) == did
    for bad in ["did:key:abc", "did:key:z111", "did:web:x", "did:key:z6Mk0OIl"]:
        with pytest.raises(ValueError):
            public_from_did_key(bad)


def test_custom_method_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "custom_method.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "hi - paid 0.05 USD" in out and "code:B2" in out


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "budgeted_agent.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "signed mandate" in out
    assert out.count("PAID ") == 4 and out.count("REFUSED ") == 3
    assert "approval asked for 0.42 USD" in out
    # The x402 endpoint is paid under the same budget, after the dev calls used 0.92 of it.
    assert "0.05 USD to 0x742d35cc6634c0532925a3b844bc9e7595f8fe00 via x402 -> HTTP 200" in out
    assert "spent 0.97 USD of 1.00 USD; 0.03 USD remains" in out
    assert "exceeds the per-call cap 0.50 USD" in out
    assert "would exceed budget 'total' of 1.00 USD" in out


def test_a_method_written_for_the_earlier_hooks_still_pays_with_a_warning() -> None:
    """``pay(challenge)``, ``credential_source``, ``moves_funds_on_pay`` work until 0.3."""
    import warnings

    from mpp_client import Amount, PaymentMethod, Quote, charge_terms

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class OldStyle(PaymentMethod):
            name = "dev"
            moves_funds_on_pay = False

            def credential_source(self, challenge: Challenge) -> str:
                return "did:example:old"

            def quote(self, challenge: Challenge) -> Quote:
                terms = charge_terms(challenge)
                return Quote(Amount(terms.amount, "USD", 2), terms.recipient or "", "dev", "charge")

            def pay(self, challenge: Challenge) -> dict[str, str]:
                return {"old": "yes"}

    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert any("OldStyle.pay(challenge) is deprecated" in m for m in messages)
    assert any("credential_source, moves_funds_on_pay" in m for m in messages)
    method = OldStyle()
    challenge = dev_challenge()
    quote = method._flow_quote(challenge)
    assert quote.payer == "did:example:old" and quote.moves_funds is False
    assert method.pay(challenge, quote) == {"old": "yes"}
    assert method._flow_moved(challenge, quote, {"old": "yes"}) is False
