"""Agent and owner keys in the OS keyring, through a real keyring backend.

No desktop keyring daemon (Secret Service, KWallet) runs on this machine, and
there is no macOS Keychain or Windows Credential Locker: the tests use the
``keyrings.alt`` encrypted file backend instead, a real ``keyring`` backend
that works headless, pointed at a file in a temporary directory and selected
with ``keyring.set_keyring(...)`` (or passed as ``backend=``). What
``mpp_client`` does with it is exactly what it does with the platform's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backends.fail
import pytest
from keyrings.alt.file import EncryptedKeyring

from mpp_client._exceptions import KeystoreError
from mpp_client.identity import (
    KDF_MEMLIMIT_MIN,
    KDF_OPSLIMIT_MIN,
    AgentKey,
    OwnerKey,
    SignerError,
    sign_record,
    verify_record,
    verify_signature,
)
from mpp_client.protocol import canonical_json
from tests.test_identity import SEED, assert_no_secrets

SERVICE = "mpp-client-test"
KEYRING_PASSWORD = "keyring file password"


def file_keyring(path: Path) -> EncryptedKeyring:
    backend = EncryptedKeyring()
    backend.file_path = str(path)
    # Otherwise it asks for the password on the terminal (getpass).
    backend.keyring_key = KEYRING_PASSWORD
    return backend


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[EncryptedKeyring]:
    """The process-wide keyring, set to an encrypted file for the test, then restored."""
    previous = keyring.get_keyring()
    chosen = file_keyring(tmp_path / "keyring.cfg")
    keyring.set_keyring(chosen)
    try:
        yield chosen
    finally:
        keyring.set_keyring(previous)


@pytest.mark.parametrize("cls", [AgentKey, OwnerKey])
def test_round_trip_through_the_default_keyring(
    backend: EncryptedKeyring, cls: type[AgentKey | OwnerKey]
) -> None:
    key = cls.from_seed(SEED)
    key.save_to_keyring(SERVICE, "main")
    loaded = cls.from_keyring(SERVICE, "main")
    assert loaded == key
    assert (loaded.location, loaded.hardware) == ("keyring", False)
    assert verify_signature(key.did, b"m", loaded.sign(b"m"))
    assert repr(loaded) == f"{cls.__name__}(did={key.did!r}, location='keyring')"


def test_an_explicit_backend_and_the_keyring_file_holds_no_plain_seed(tmp_path: Path) -> None:
    backend = file_keyring(tmp_path / "other.cfg")
    agent = AgentKey.from_seed(SEED)
    agent.save_to_keyring(SERVICE, "agent-1", backend=backend)
    loaded = AgentKey.from_keyring(SERVICE, "agent-1", backend=backend)
    record = {"amount": "0.25 USD"}
    assert verify_record(agent.did, record, sign_record(loaded, record))
    assert_no_secrets((tmp_path / "other.cfg").read_text())


def test_refuses_to_overwrite_unless_asked(backend: EncryptedKeyring) -> None:
    AgentKey.from_seed(SEED).save_to_keyring(SERVICE, "main")
    other = AgentKey.generate()
    with pytest.raises(KeystoreError, match="already holds a secret"):
        other.save_to_keyring(SERVICE, "main")
    assert AgentKey.from_keyring(SERVICE, "main") == AgentKey.from_seed(SEED)
    other.save_to_keyring(SERVICE, "main", overwrite=True)
    assert AgentKey.from_keyring(SERVICE, "main") == other


def test_missing_entry_and_other_kind(backend: EncryptedKeyring) -> None:
    with pytest.raises(KeystoreError, match="no key under 'mpp-client-test'/'nobody'"):
        AgentKey.from_keyring(SERVICE, "nobody")
    OwnerKey.from_seed(SEED).save_to_keyring(SERVICE, "owner")
    with pytest.raises(KeystoreError, match="holds an owner key, not an agent key"):
        AgentKey.from_keyring(SERVICE, "owner")


def entry(**changes: Any) -> str:
    good = {
        "type": "mpp-client/keyring-key/v1",
        "kind": "agent",
        "did": AgentKey.from_seed(SEED).did,
        "seed": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    }
    return canonical_json({**good, **changes}).decode()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("hunter2", "not JSON"),
        ("[]", "expected exactly the fields"),
        (entry(type="other"), "'type' must be"),
        (entry(kind="root"), "'kind' must be"),
        (entry(seed="AAAA"), "32 bytes"),
        (entry(seed=5), "32 bytes"),
        (entry(did=AgentKey.generate().did), "does not match its did"),
        ("x" * 5000, "not a short string"),
    ],
)
def test_foreign_or_altered_entries_are_refused(
    backend: EncryptedKeyring, value: str, error: str
) -> None:
    backend.set_password(SERVICE, "main", value)
    with pytest.raises(KeystoreError, match=error) as info:
        AgentKey.from_keyring(SERVICE, "main")
    assert_no_secrets(str(info.value))


def test_no_keyring_available_is_a_signer_error() -> None:
    # What a headless machine without keyrings.alt has: keyring's "fail" backend.
    failing = keyring.backends.fail.Keyring()
    with pytest.raises(SignerError, match=r"cannot read .*\(NoKeyringError\)"):
        AgentKey.from_keyring(SERVICE, "main", backend=failing)
    with pytest.raises(SignerError, match="NoKeyringError"):
        AgentKey.from_seed(SEED).save_to_keyring(SERVICE, "main", backend=failing)


@pytest.mark.parametrize(("service", "name"), [("", "x"), ("x", ""), (None, "x"), ("x", 3)])
def test_names_must_be_strings(backend: EncryptedKeyring, service: Any, name: Any) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        AgentKey.from_keyring(service, name)


def test_a_keyring_key_can_move_to_a_keystore_file(
    backend: EncryptedKeyring, tmp_path: Path
) -> None:
    AgentKey.from_seed(SEED).save_to_keyring(SERVICE, "main")
    loaded = AgentKey.from_keyring(SERVICE, "main")
    loaded.save(tmp_path / "a.key", "pw", opslimit=KDF_OPSLIMIT_MIN, memlimit=KDF_MEMLIMIT_MIN)
    assert AgentKey.load(tmp_path / "a.key", "pw") == loaded
