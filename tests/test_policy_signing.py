"""``[signing] hardware_above``: above an amount, only a hardware-held key may sign.

The policy learns where the signing key lives from ``PaymentContext``
(``signer_location``, ``signer_hardware``); unknown counts as not hardware.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mpp_client import AsyncClient, DevWallet, Mandate, OwnerKey, PolicyDenied
from mpp_client.identity import AgentKey
from mpp_client.policy import PaymentContext, Policy, PolicyError, Signing
from mpp_client.testing import PaidServer
from tests.test_policy import DEV, OPEN, USDC, ctx, make_policy

RULE = "signing.hardware_above"


def signing_policy(threshold: str | None = "1.00 USD", **fields: Any) -> Policy:
    extra: dict[str, Any] = {"per_call": "100.00 USD", **fields}
    if threshold is not None:
        extra["signing"] = {"hardware_above": threshold}
    return make_policy(**extra)


def context(
    units: int, asset: dict[str, Any], location: str | None, hardware: bool
) -> PaymentContext:
    base = ctx(units, **asset)
    return dataclasses.replace(base, signer_location=location, signer_hardware=hardware)


@pytest.mark.parametrize(
    ("threshold", "units", "asset", "location", "hardware", "outcome", "reason"),
    [
        # Below or at the threshold any key may sign, wherever it lives.
        ("1.00 USD", 50, DEV, "process", False, "allow", "0.50 USD is not above 1.00 USD"),
        ("1.00 USD", 100, DEV, "keystore", False, "allow", "a key in keystore may sign it"),
        ("1.00 USD", 100, DEV, None, False, "allow", "a key in an unknown place may sign it"),
        # Above it, only a hardware-held key.
        ("1.00 USD", 101, DEV, "pkcs11", True, "allow", "hardware-held (pkcs11)"),
        (
            "1.00 USD",
            101,
            DEV,
            "keystore",
            False,
            "deny",
            "amount 1.01 USD is above signing.hardware_above 1.00 USD and the key that would "
            "sign it is not hardware-held (it lives in keystore)",
        ),
        ("1.00 USD", 101, DEV, "keyring", False, "deny", "(it lives in keyring)"),
        ("1.00 USD", 101, DEV, "process", False, "deny", "(it lives in process)"),
        # A software token (SoftHSM) is PKCS#11 but not hardware.
        ("1.00 USD", 101, DEV, "pkcs11", False, "deny", "(it lives in pkcs11)"),
        # Nothing said where the key lives: deny by default.
        ("1.00 USD", 101, DEV, None, False, "deny", "(it lives in an unknown place)"),
        # Valued in the policy currency through the registry, to the base unit.
        ("1.00 USD", 1_000_000, USDC, "process", False, "allow", "is not above 1.00 USD"),
        ("1.00 USD", 1_000_001, USDC, "process", False, "deny", "1.000001 USD is above"),
        ("1.00 USD", 1_000_001, USDC, "pkcs11", True, "allow", "hardware-held"),
        (
            "0 USD",
            1,
            DEV,
            "process",
            False,
            "deny",
            "0.01 USD is above signing.hardware_above 0.00",
        ),
    ],
)
def test_hardware_above(
    threshold: str,
    units: int,
    asset: dict[str, Any],
    location: str | None,
    hardware: bool,
    outcome: str,
    reason: str,
) -> None:
    decision = signing_policy(threshold).decide(context(units, asset, location, hardware))
    assert decision.outcome == outcome
    [result] = [r for r in decision.rules if r.rule == RULE]
    assert result.passed is (outcome == "allow")
    assert reason in result.reason
    if outcome == "deny":
        # The refusal names the rule and its reason, like every other rule.
        assert [r.rule for r in decision.rules if not r.passed] == [RULE]


@pytest.mark.parametrize("hardware", [True, False])
def test_no_rule_means_no_signing_check(hardware: bool) -> None:
    decision = signing_policy(None).decide(context(5000, DEV, "process", hardware))
    assert decision.outcome == "allow"
    assert RULE not in [r.rule for r in decision.rules]
    assert signing_policy(None).signing is None
    empty = signing_policy(None, signing={}).decide(context(5000, DEV, None, False))
    assert empty.outcome == "allow" and RULE not in [r.rule for r in empty.rules]


def test_the_default_context_knows_nothing_about_the_signer() -> None:
    plain = ctx(101)
    assert (plain.signer_location, plain.signer_hardware) == (None, False)
    assert signing_policy().decide(plain).outcome == "deny"


@pytest.mark.parametrize(
    ("mode", "paid", "recorded"),
    [("dry-run", "deny", "deny"), ("shadow", "allow", "deny")],
)
def test_modes_record_the_rule(mode: str, paid: str, recorded: str) -> None:
    decision = signing_policy(mode=mode).decide(context(101, DEV, "keystore", False))
    assert decision.outcome == paid
    judged = decision.shadow or decision
    assert judged.outcome == recorded
    assert any(r.rule == RULE and not r.passed for r in judged.rules)


@pytest.mark.parametrize(
    ("signing", "error"),
    [
        ({"hardware_above": "1.00 EUR"}, "signing.hardware_above is in EUR"),
        ({"hardware_above": "lots"}, "signing.hardware_above"),
        ({"hardware_above": 1.5}, "signing.hardware_above"),
        ({"hardware_over": "1.00 USD"}, "signing.hardware_over"),
        ({"hardware_above": "1.00 USD", "require": "pkcs11"}, "signing.require"),
    ],
)
def test_invalid_signing_sections_name_the_setting(signing: dict[str, Any], error: str) -> None:
    with pytest.raises(PolicyError, match=error.replace(".", r"\.")):
        make_policy(signing=signing)


def test_toml_json_and_mandates_carry_the_rule() -> None:
    allow = "\n".join(f'{key} = ["*"]' for key in OPEN)
    policy = Policy.from_toml(
        f'currency = "USD"\nper_call = "5.00 USD"\n[allow]\n{allow}\n'
        '[signing]\nhardware_above = "1.00 USD"\n'
    )
    assert policy.signing == Signing(hardware_above="1.00 USD")  # type: ignore[arg-type]
    data = policy.to_dict()
    assert data["signing"] == {"hardware_above": "1.00 USD"}
    assert Policy.from_mapping(data) == policy
    owner, agent = OwnerKey.generate(), AgentKey.generate()
    now = datetime.now(UTC)
    mandate = Mandate.issue(owner, agent.did, data, expires_at=now + timedelta(days=1))
    delegated = Policy.from_mandate(mandate, owner_keys=[owner.did], agent=agent)
    assert delegated.signing == policy.signing
    assert delegated.decide(context(101, DEV, "keystore", False)).outcome == "deny"


class _HeldKey:
    """Stands for a hardware signer (a PKCS#11 one is tested in test_signer_pkcs11.py)."""

    location = "pkcs11"
    hardware = True


class _HardwareDevWallet(DevWallet):
    signer = _HeldKey()


@pytest.mark.parametrize(
    ("wallet", "dear_paid", "where"),
    [(DevWallet, False, "it lives in process"), (_HardwareDevWallet, True, "pkcs11")],
    ids=["in-process-key", "hardware-key"],
)
async def test_through_the_flow_the_wallets_signer_decides_above_the_threshold(
    wallet: type[DevWallet], dear_paid: bool, where: str
) -> None:
    # The flow tells the policy where the wallet's key lives (its ``signer``;
    # a wallet without one signs in the process).
    server = PaidServer({"/cheap": "0.50 USD", "/dear": "2.00 USD"})
    async with AsyncClient(
        transport=httpx.ASGITransport(app=server),
        base_url="https://shop.example",
        methods=[wallet()],
        policy=signing_policy(),
        ledger="memory:",
    ) as client:
        assert (await client.get("/cheap")).status_code == 200
        if dear_paid:
            response = await client.get("/dear")
            assert response.status_code == 200
            record = response.extensions["mpp"]
            assert any(where in r.reason for r in record.decision.rules)
        else:
            with pytest.raises(PolicyDenied, match=r"above signing\.hardware_above") as info:
                await client.get("/dear")
            assert where in str(info.value)
