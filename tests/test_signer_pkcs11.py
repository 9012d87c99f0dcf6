"""Keys inside a PKCS#11 token: SoftHSM2, a real PKCS#11 module, not a mock.

``scripts/hsm-tools.sh`` installs the Debian package ``softhsm2`` when it is
missing (``./run test`` runs it first) and prints the module's path. The
fixture points ``SOFTHSM2_CONF`` at a configuration whose token directory
is temporary, creates a token there with ``softhsm2-util``, and the tests
generate keys *inside* it (sensitive, non-extractable) and sign through it:
Ed25519 with ``CKM_EDDSA`` for agent and owner keys, secp256k1 with
``CKM_ECDSA`` for a wallet key. The signatures are checked by the verifiers
everyone else uses (``verify_signature``, ``verify_record``, mandate
verification, the ledger's ``verify()``, eth-account recovery, an anvil node).
"""

from __future__ import annotations

import os
import pickle
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pkcs11
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from mpp_client import AsyncClient, Client, DevWallet, Mandate, Policy, Revocations, payment_record
from mpp_client._exceptions import KeystoreError
from mpp_client.identity import (
    AgentKey,
    OwnerKey,
    Pkcs11Secp256k1Signer,
    Pkcs11Token,
    SignerError,
    recover_address,
    sign_record,
    sign_transaction,
    sign_typed_data,
    verify_record,
    verify_signature,
)
from mpp_client.identity._signer import SECP256K1_N
from mpp_client.ledger import SqliteLedger
from mpp_client.methods.tempo import proof_typed_data
from mpp_client.testing import PaidServer
from mpp_client.testing.evm import Anvil
from tests.chain.tooling import anvil_binary

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "mpp-test"
#: A second token nobody logs in to: PKCS#11 logins are per process, so a wrong
#: PIN is only ever refused by a token this process is not logged in to yet.
UNUSED_TOKEN = "mpp-unused"
PIN = "4321"
SO_PIN = "87654321"
INIT_TOKEN = ("softhsm2-util", "--init-token", "--free")


def softhsm_module() -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "hsm-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/hsm-tools.sh failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The SoftHSM module, initialised on a fresh token in a temporary directory."""
    path = softhsm_module()
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        for label in (TOKEN, UNUSED_TOKEN):
            subprocess.run(
                [*INIT_TOKEN, "--label", label, "--so-pin", SO_PIN, "--pin", PIN],
                check=True,
                capture_output=True,
                timeout=60,
            )
        # SoftHSM reads SOFTHSM2_CONF when the module is initialised: do it now.
        pkcs11.lib(path).reinitialize()
        yield path


@pytest.fixture(scope="module")
def token(module: str) -> Iterator[Pkcs11Token]:
    with Pkcs11Token(module, token_label=TOKEN, pin=PIN) as opened:
        yield opened


@pytest.fixture(scope="module")
def vouched(module: str) -> Iterator[Pkcs11Token]:
    """The same token, with the operator vouching that it is hardware."""
    with Pkcs11Token(module, token_label=TOKEN, pin=PIN, hardware=True) as opened:
        yield opened


@pytest.fixture(scope="module")
def hsm_agent(token: Pkcs11Token) -> AgentKey:
    return AgentKey(token.generate_ed25519("agent"))


@pytest.fixture(scope="module")
def hsm_owner(token: Pkcs11Token) -> OwnerKey:
    return OwnerKey(token.generate_ed25519("owner"))


@pytest.fixture(scope="module")
def hsm_wallet(token: Pkcs11Token) -> Pkcs11Secp256k1Signer:
    return token.generate_secp256k1("wallet")


def raw_session(module: str, token: Pkcs11Token) -> Any:
    """A plain python-pkcs11 session, to inspect what the token holds.

    ``token`` keeps this process logged in, which the new session shares.
    """
    return pkcs11.lib(module).get_token(token_label=TOKEN).open()


# -- Ed25519 ----------------------------------------------------------------------------


def test_the_agent_key_is_generated_inside_the_token_and_never_leaves(
    module: str, token: Pkcs11Token, hsm_agent: AgentKey
) -> None:
    assert hsm_agent.location == "pkcs11"
    # SoftHSM's slot does not claim CKF_HW_SLOT (it is software): honestly not hardware.
    assert hsm_agent.hardware is False
    with raw_session(module, token) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, label="agent")
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.TOKEN] is True
        with pytest.raises(AttributeSensitive):
            private[Attribute.VALUE]


def test_eddsa_signatures_verify_with_the_ordinary_verifiers(hsm_agent: AgentKey) -> None:
    signature = hsm_agent.sign(b"pay 0.25 USD")
    assert len(signature) == 64
    assert verify_signature(hsm_agent.did, b"pay 0.25 USD", signature)
    assert not verify_signature(hsm_agent.did, b"pay 9.25 USD", signature)
    record = {"amount": "0.25 USD", "payee": "merchant-1"}
    assert verify_record(hsm_agent.did, record, sign_record(hsm_agent, record))
    assert not verify_record(AgentKey.generate().did, record, sign_record(hsm_agent, record))


def test_the_owner_key_in_the_token_issues_mandates_and_revocations(
    hsm_owner: OwnerKey, hsm_agent: AgentKey
) -> None:
    now = datetime.now(UTC)
    mandate = Mandate.issue(
        hsm_owner, hsm_agent.did, {"per_call": "1 USD"}, expires_at=now + timedelta(days=1)
    )
    parsed = Mandate.from_json(mandate.to_json())
    parsed.verify(owner_keys=[hsm_owner.did], agent=hsm_agent, now=now)
    revoked = Revocations.issue(hsm_owner, [mandate.id])
    revoked.verify(owner_keys=[hsm_owner.did])


def test_keys_are_found_again_by_label_in_a_new_session(module: str, hsm_agent: AgentKey) -> None:
    with Pkcs11Token(module, token_label=TOKEN, pin=PIN) as again:
        found = AgentKey(again.ed25519("agent"))
        assert found == hsm_agent
        assert verify_signature(hsm_agent.did, b"m", found.sign(b"m"))


def test_hardware_needs_a_hardware_token_and_a_sealed_key(
    vouched: Pkcs11Token, hsm_agent: AgentKey
) -> None:
    assert vouched.hardware and AgentKey(vouched.ed25519("agent")).hardware
    assert not hsm_agent.hardware


def test_labels_are_unique_and_must_exist(token: Pkcs11Token, hsm_agent: AgentKey) -> None:
    with pytest.raises(SignerError, match="already holds an object labelled 'agent'"):
        token.generate_ed25519("agent")
    with pytest.raises(SignerError, match="no EC_EDWARDS key pair labelled 'nobody'"):
        token.ed25519("nobody")
    with pytest.raises(ValueError, match="key label"):
        token.ed25519("")


def test_keys_of_the_other_kind_are_refused(
    token: Pkcs11Token, hsm_wallet: Pkcs11Secp256k1Signer
) -> None:
    with pytest.raises(SignerError, match="no EC_EDWARDS key pair labelled 'wallet'"):
        token.ed25519("wallet")
    with pytest.raises(SignerError, match="no EC key pair labelled 'agent'"):
        token.secp256k1("agent")


def test_a_key_in_the_token_cannot_be_exported(tmp_path: Path, hsm_agent: AgentKey) -> None:
    with pytest.raises(KeystoreError, match="lives in pkcs11 and never leaves it"):
        hsm_agent.save(tmp_path / "agent.key", "pw")
    with pytest.raises(KeystoreError, match="lives in pkcs11"):
        hsm_agent.save_to_keyring("svc", "agent")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(hsm_agent.signer)


@pytest.mark.parametrize(
    ("label", "pin", "error"),
    [(UNUSED_TOKEN, "0000", "PinIncorrect"), ("no-such-token", PIN, "NoSuchToken")],
)
def test_opening_failures_name_the_token_not_the_pin(
    module: str, label: str, pin: str, error: str
) -> None:
    with pytest.raises(SignerError, match=error) as info:
        Pkcs11Token(module, token_label=label, pin=pin)
    assert label in str(info.value)
    assert pin not in str(info.value).replace(label, "")


def test_a_missing_module_is_a_signer_error(tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="loading the module"):
        Pkcs11Token(tmp_path / "nope.so", token_label=TOKEN, pin=PIN)


def test_a_closed_token_stops_signing(module: str) -> None:
    opened = Pkcs11Token(module, token_label=TOKEN, pin=PIN)
    agent = AgentKey(opened.ed25519("agent"))
    opened.close()
    with pytest.raises(SignerError, match="was closed"):
        agent.sign(b"m")
    assert "closed" in repr(opened)
    opened.close()  # twice is fine


def test_reprs_name_the_key_and_never_a_pin(token: Pkcs11Token, hsm_agent: AgentKey) -> None:
    text = repr(token) + repr(hsm_agent) + repr(hsm_agent.signer)
    assert PIN not in text and SO_PIN not in text
    assert "token='mpp-test'" in repr(hsm_agent.signer)
    assert repr(hsm_agent) == f"AgentKey(did={hsm_agent.did!r}, location='pkcs11')"


# -- the whole path: an HSM agent pays under an HSM owner's mandate -----------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_hsm_keys_sign_a_mandated_payment_and_the_ledger_verifies(
    tmp_path: Path, live: Any, hsm_owner: OwnerKey, hsm_agent: AgentKey, mode: str
) -> None:
    host = "127.0.0.1" if mode == "sync" else "shop.test"
    policy_document = {
        "currency": "USD",
        "per_call": "1.00 USD",
        "allow": {
            "hosts": [host],
            "realms": ["*"],
            "payees": ["*"],
            "methods": ["dev"],
            "intents": ["charge"],
            "assets": ["*"],
        },
    }
    mandate = Mandate.issue(
        hsm_owner,
        hsm_agent.did,
        policy_document,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    policy = Policy.from_mandate(mandate, owner_keys=[hsm_owner.did], agent=hsm_agent)
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", agent_key=hsm_agent, checkpoint_every=1)
    server = PaidServer({"/paid": "0.25 USD"})
    common: dict[str, Any] = {
        "methods": [DevWallet()],
        "policy": policy,
        "ledger": ledger,
        "agent_key": hsm_agent,
    }
    try:
        if mode == "sync":
            with Client(base_url=live(server), allow_insecure_localhost=True, **common) as client:
                response = client.get("/paid")
        else:
            async with AsyncClient(
                transport=httpx.ASGITransport(app=server), base_url="https://shop.test", **common
            ) as client:
                response = await client.get("/paid")
        assert response.status_code == 200
        record = payment_record(response)
        assert record is not None and record.signature and record.agent == hsm_agent.did
        assert verify_record(hsm_agent.did, record.decision_record(), record.signature)
        assert record.decision is not None and record.decision.rules[0].rule == "mandate"
        report = ledger.verify(trusted_agents=[hsm_agent.did], require_signatures=True)
        assert report.ok, str(report)
        assert report.signed == report.events > 0 and report.checkpoints > 0
    finally:
        ledger.close()


# -- secp256k1 ----------------------------------------------------------------------------


def test_softhsm_supports_secp256k1_and_signs_ethereum_valid_digests(
    module: str, token: Pkcs11Token, hsm_wallet: Pkcs11Secp256k1Signer
) -> None:
    assert hsm_wallet.location == "pkcs11" and not hsm_wallet.hardware
    assert hsm_wallet.address.startswith("0x") and len(hsm_wallet.address) == 42
    for i in range(16):  # the token's s is random: half of them come back high
        digest = bytes([i]) * 32
        signature = hsm_wallet.sign_digest(digest)
        assert signature.s <= SECP256K1_N // 2
        assert recover_address(digest, signature) == hsm_wallet.address
    with raw_session(module, token) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label="wallet")
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True


def test_hsm_typed_data_signature_recovers_with_eth_account(
    hsm_wallet: Pkcs11Secp256k1Signer,
) -> None:
    full = proof_typed_data(
        chain_id=42431,
        challenge_id="ch_1",
        realm="api.example.com",
        account=hsm_wallet.address,
        version=3,
    )
    signature = sign_typed_data(hsm_wallet, full)
    recovered = Account.recover_message(
        encode_typed_data(full_message=full), signature=signature.to_bytes()
    )
    assert recovered == hsm_wallet.address


def test_hsm_signed_eip1559_transaction_is_mined_by_anvil(
    hsm_wallet: Pkcs11Secp256k1Signer,
) -> None:
    recipient = Account.from_key("0x" + "5a" * 32).address
    with Anvil(anvil_binary()) as node:
        node.set_balance(hsm_wallet.address, 10**18)
        block = node.rpc.call("eth_getBlockByNumber", "latest", False)
        base_fee = int(block["baseFeePerGas"], 16)
        transaction = {
            "type": 2,
            "chainId": node.chain_id,
            "nonce": 0,
            "to": recipient,
            "value": 12345,
            "data": b"",
            "gas": 21000,
            "maxPriorityFeePerGas": 1,
            "maxFeePerGas": 2 * base_fee + 1,
        }
        raw, tx_hash = sign_transaction(hsm_wallet, transaction)
        assert Account.recover_transaction(raw) == hsm_wallet.address
        assert node.rpc.call("eth_sendRawTransaction", "0x" + raw.hex()) == tx_hash
        receipt = node.rpc.wait_for_receipt(tx_hash, 30.0)
        assert receipt is not None and int(receipt["status"], 16) == 1
        assert receipt["from"].lower() == hsm_wallet.address.lower()
        assert int(node.rpc.call("eth_getBalance", recipient, "latest"), 16) == 12345


def test_digest_must_be_32_bytes(hsm_wallet: Pkcs11Secp256k1Signer) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        hsm_wallet.sign_digest(b"short")


def test_softhsm_conf_is_the_temporary_one(module: str) -> None:
    # The tests never touch the machine's own SoftHSM configuration or tokens.
    assert "SOFTHSM2_CONF" in os.environ
    assert Path(os.environ["SOFTHSM2_CONF"]).parent.name.startswith("softhsm")


# -- a wallet whose key never leaves the token, paying on a real chain ----------------


@pytest.mark.parametrize("hardware", [True, False], ids=["vouched-hardware", "software-token"])
def test_an_evm_wallet_with_its_key_in_the_token_pays_and_the_hardware_rule_decides(
    module: str, token: Pkcs11Token, vouched: Pkcs11Token, hardware: bool, live: Any
) -> None:
    """The wallet signs its EIP-3009 authorization inside SoftHSM (through the signer
    seam); the server settles it on anvil. A policy requiring a hardware key above
    0.10 USD pays with a vouched-hardware token, and refuses the same key otherwise."""
    from mpp_client import PolicyDenied
    from mpp_client.methods import EvmWallet
    from mpp_client.money import AssetEntry
    from mpp_client.testing.evm import EvmVerifier
    from tests.chain.tooling import (
        TOKEN_DECIMALS,
        TOKEN_NAME,
        TOKEN_VERSION,
        compile_contracts,
        start_world,
    )
    from tests.rails import OPEN

    label = f"payer-{hardware}"
    (vouched if hardware else token).generate_secp256k1(label)
    signer = (vouched if hardware else token).secp256k1(label)
    assert signer.hardware is hardware
    world = start_world(anvil_binary(), compile_contracts())
    try:
        world.anvil.set_balance(signer.address, 10**18)
        world.mint(signer.address, 1_000_000)
        merchant = Account.create().address
        verifier = EvmVerifier(
            world.url,
            token=world.token,
            submitter=world.funded_account(),
            credential_types=["authorization"],
            token_domain=(TOKEN_NAME, TOKEN_VERSION),
            decimals=TOKEN_DECIMALS,
        )
        server = PaidServer(
            {"/paid": "0.25 USD"},
            verifier=verifier,
            currency=world.token,
            recipient=merchant,
            asset="USD",
            decimals=TOKEN_DECIMALS,
        )
        asset = AssetEntry("evm", world.token, "USD", TOKEN_DECIMALS, world.chain_id, "TUSD")
        policy = Policy.from_mapping(
            {
                "currency": "USD",
                "per_call": "1.00 USD",
                "allow": OPEN,
                "signing": {"hardware_above": "0.10 USD"},
                "assets": [
                    {
                        "method": "evm",
                        "currency": world.token,
                        "asset": "USD",
                        "decimals": TOKEN_DECIMALS,
                        "chain_id": world.chain_id,
                    }
                ],
            }
        )
        wallet = EvmWallet(
            signer,
            rpc_urls={world.chain_id: world.url},
            assets=[asset],
            credential_types=("authorization",),
        )
        assert wallet.signer.location == "pkcs11"
        url = live(server)
        with Client(
            methods=[wallet], policy=policy, ledger="memory:", allow_insecure_localhost=True
        ) as client:
            if hardware:
                response = client.get(url + "/paid")
                assert response.status_code == 200, response.text
                assert world.balance(merchant) == 250_000
                assert world.balance(signer.address) == 750_000
            else:
                with pytest.raises(PolicyDenied, match=r"signing\.hardware_above"):
                    client.get(url + "/paid")
                assert world.balance(merchant) == 0
    finally:
        world.anvil.stop()
