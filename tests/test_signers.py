"""The signer seam: AgentKey/OwnerKey over any Ed25519Signer, secp256k1 signers, hygiene.

The keyring and PKCS#11 implementations have their own files
(test_signer_keyring.py, test_signer_pkcs11.py); this one covers the seam
itself, the in-process signers and the keystore-backed ones.
"""

from __future__ import annotations

import copy
import logging
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from mpp_client._exceptions import KeystoreError
from mpp_client.identity import (
    KDF_MEMLIMIT_MIN,
    KDF_OPSLIMIT_MIN,
    AgentKey,
    Ed25519Signer,
    LocalEd25519Signer,
    LocalSecp256k1Signer,
    Location,
    OwnerKey,
    RecoverableSignature,
    Secp256k1Signer,
    SignerError,
    recover_address,
    recoverable_signature,
    sign_record,
    sign_transaction,
    sign_typed_data,
    typed_data_digest,
    verify_record,
    verify_signature,
)
from mpp_client.identity._signer import SECP256K1_N
from mpp_client.mandate import Mandate
from mpp_client.methods.tempo import proof_typed_data
from tests.test_identity import SEED, assert_no_secrets

FAST: dict[str, Any] = {"opslimit": KDF_OPSLIMIT_MIN, "memlimit": KDF_MEMLIMIT_MIN}
NOW = datetime(2026, 1, 1, tzinfo=UTC)
WALLET_KEY = "0x" + "42" * 32


class OutsideSigner(Ed25519Signer):
    """A signer the key classes cannot look into: a nacl key behind the ABC only.

    ``mode`` makes it misbehave the ways a broken token or plug-in could.
    """

    __slots__ = ("_key", "mode")

    def __init__(self, seed: bytes = SEED, mode: str = "ok") -> None:
        self._key = nacl.signing.SigningKey(seed)
        self.mode = mode

    @property
    def location(self) -> Location:
        return "keyring"

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        if self.mode == "raise":
            raise RuntimeError("device unplugged")
        if self.mode == "wrong-key":
            return nacl.signing.SigningKey(bytes(32)).sign(message).signature
        if self.mode == "short":
            return b"\0" * 10
        return self._key.sign(message).signature


# -- the Ed25519 seam -----------------------------------------------------------------


def test_default_keys_are_in_process_signers() -> None:
    key = AgentKey.generate()
    assert isinstance(key.signer, LocalEd25519Signer)
    assert (key.location, key.hardware) == ("process", False)
    assert key.signer.did == key.did
    assert AgentKey(nacl.signing.SigningKey(SEED)) == AgentKey.from_seed(SEED)


def test_a_loaded_keystore_key_says_where_it_lives(tmp_path: Path) -> None:
    AgentKey.from_seed(SEED).save(tmp_path / "a.key", "pw", **FAST)
    loaded = AgentKey.load(tmp_path / "a.key", "pw")
    assert (loaded.location, loaded.hardware) == ("keystore", False)
    assert loaded == AgentKey.from_seed(SEED)
    assert repr(loaded) == f"AgentKey(did={loaded.did!r}, location='keystore')"
    # An in-process key, so it can be saved again (re-encrypted).
    loaded.save(tmp_path / "b.key", "other", **FAST)
    assert AgentKey.load(tmp_path / "b.key", "other") == loaded


@pytest.mark.parametrize("cls", [AgentKey, OwnerKey])
def test_keys_accept_any_ed25519_signer(cls: type[AgentKey | OwnerKey]) -> None:
    key = cls(OutsideSigner())
    assert key.did == AgentKey.from_seed(SEED).did
    assert key.location == "keyring"
    signature = key.sign(b"message")
    assert verify_signature(key.did, b"message", signature)
    assert repr(key) == f"{cls.__name__}(did={key.did!r}, location='keyring')"


def test_everything_that_signs_goes_through_the_signer() -> None:
    agent = AgentKey(OutsideSigner())
    owner = OwnerKey(OutsideSigner(bytes(range(1, 33))))
    record = {"amount": "0.25 USD", "payee": "merchant-1"}
    assert verify_record(agent.did, record, sign_record(agent, record))
    mandate = Mandate.issue(
        owner, agent.did, {"per_call": "1 USD"}, issued_at=NOW, expires_at=NOW + timedelta(1)
    )
    mandate.verify(owner_keys=[owner.did], agent=agent, now=NOW)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("raise", r"failed \(RuntimeError\)"), ("wrong-key", "does not verify"), ("short", "not")],
)
def test_a_misbehaving_signer_is_a_signer_error(mode: str, reason: str) -> None:
    key = AgentKey(OutsideSigner(mode=mode))
    with pytest.raises(SignerError, match=reason) as info:
        key.sign(b"message")
    assert key.did in str(info.value)
    assert_no_secrets(str(info.value))


def test_a_key_outside_the_process_cannot_be_saved(tmp_path: Path) -> None:
    key = AgentKey(OutsideSigner())
    with pytest.raises(KeystoreError, match="lives in keyring and never leaves it"):
        key.save(tmp_path / "k.key", "pw", **FAST)
    assert not (tmp_path / "k.key").exists()


def test_sign_still_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        AgentKey(OutsideSigner()).sign("text")  # type: ignore[arg-type]


def test_the_constructor_refuses_what_is_not_a_signer() -> None:
    with pytest.raises(TypeError, match="Ed25519Signer"):
        AgentKey(SEED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        LocalEd25519Signer.from_seed(SEED[:31])
    with pytest.raises(ValueError, match="process, a keystore or a keyring"):
        LocalEd25519Signer(nacl.signing.SigningKey(SEED), location="pkcs11")  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_signers_cannot_be_pickled_and_copy_to_themselves(protocol: int) -> None:
    for signer in (LocalEd25519Signer.from_seed(SEED), OutsideSigner()):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(signer, protocol=protocol)
        assert copy.copy(signer) is signer
        assert copy.deepcopy(signer) is signer


def test_signer_reprs_and_logs_show_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    signer = LocalEd25519Signer.from_seed(SEED)
    assert repr(signer) == f"LocalEd25519Signer(did={signer.did!r}, location='process')"
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("signer %r key %s", signer, AgentKey(signer))
    assert_no_secrets(repr(signer) + str(signer) + caplog.text)
    assert not hasattr(signer, "__dict__")


# -- secp256k1 --------------------------------------------------------------------------


@pytest.fixture
def wallet() -> LocalSecp256k1Signer:
    return LocalSecp256k1Signer(WALLET_KEY)


def test_local_secp256k1_signs_as_eth_account_does(wallet: LocalSecp256k1Signer) -> None:
    account = Account.from_key(WALLET_KEY)
    digest = bytes(range(32))
    signature = wallet.sign_digest(digest)
    expected = account.unsafe_sign_hash(digest)
    assert signature.vrs == (expected.v, expected.r, expected.s)
    assert signature.to_bytes() == bytes(expected.signature)
    assert recover_address(digest, signature) == account.address == wallet.address
    assert isinstance(wallet, Secp256k1Signer)
    assert (wallet.location, wallet.hardware) == ("process", False)


def test_typed_data_is_the_digest_sign_message_signs(wallet: LocalSecp256k1Signer) -> None:
    full = proof_typed_data(chain_id=42431, challenge_id="ch_1", realm="api.example.com")
    full_with_domain = {
        **full,
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            **full["types"],
        },
    }
    expected = Account.from_key(WALLET_KEY).sign_message(encode_typed_data(full_message=full))
    assert typed_data_digest(full) == bytes(expected.message_hash)
    assert sign_typed_data(wallet, full).to_bytes() == bytes(expected.signature)
    assert sign_typed_data(wallet, full_with_domain).to_bytes() == bytes(expected.signature)


def test_eip1559_transaction_matches_eth_account(wallet: LocalSecp256k1Signer) -> None:
    transaction = {
        "type": 2,
        "chainId": 31337,
        "nonce": 7,
        "to": "0x" + "22" * 20,
        "value": 0,
        "data": "0xa9059cbb" + "00" * 64,
        "gas": 60_000,
        "maxPriorityFeePerGas": 10**9,
        "maxFeePerGas": 3 * 10**9,
    }
    raw, tx_hash = sign_transaction(wallet, transaction)
    expected = Account.from_key(WALLET_KEY).sign_transaction(transaction)
    assert raw == bytes(expected.raw_transaction)
    assert tx_hash == "0x" + bytes(expected.hash).hex()
    assert Account.recover_transaction(raw) == wallet.address
    with pytest.raises(ValueError, match="typed transactions"):
        sign_transaction(wallet, {k: v for k, v in transaction.items() if k != "type"})


def test_recoverable_signature_normalises_high_s_and_finds_the_parity(
    wallet: LocalSecp256k1Signer,
) -> None:
    digest = bytes(range(32, 64))
    low = wallet.sign_digest(digest)
    # The mirrored (high-s) form of the same signature, as a token may return it.
    for s in (low.s, SECP256K1_N - low.s):
        found = recoverable_signature(digest, low.r, s, wallet.address)
        assert found == low
    with pytest.raises(SignerError, match="does not recover"):
        recoverable_signature(digest, low.r, low.s, "0x" + "11" * 20)
    with pytest.raises(SignerError, match="out of range"):
        recoverable_signature(digest, 0, low.s, wallet.address)


@pytest.mark.parametrize(
    ("r", "s", "parity", "error"),
    [
        (0, 1, 0, "r is out of range"),
        (SECP256K1_N, 1, 0, "r is out of range"),
        (1, 0, 0, "lower half"),
        (1, SECP256K1_N // 2 + 1, 0, "lower half"),
        (1, 1, 2, "y_parity"),
    ],
)
def test_recoverable_signature_refuses_invalid_values(
    r: int, s: int, parity: int, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        RecoverableSignature(r=r, s=s, y_parity=parity)


def test_signatures_stay_out_of_reprs(wallet: LocalSecp256k1Signer) -> None:
    signature = wallet.sign_digest(bytes(32))
    text = repr(signature) + str(signature) + repr(wallet)
    assert f"{signature.r:x}" not in text and f"{signature.s:x}" not in text
    assert WALLET_KEY[2:] not in text
    assert signature.v in (27, 28)


@pytest.mark.parametrize("digest", [b"", bytes(31), bytes(33), "00" * 32])
def test_sign_digest_takes_exactly_32_bytes(wallet: LocalSecp256k1Signer, digest: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="32-byte"):
        wallet.sign_digest(digest)


def test_a_bad_wallet_key_does_not_echo_it() -> None:
    with pytest.raises(ValueError, match="not a valid secp256k1 private key") as info:
        LocalSecp256k1Signer("0x" + "ff" * 32)
    assert "ff" * 32 not in str(info.value)
