"""Agent and owner keys, the encrypted keystore, and record signatures."""

from __future__ import annotations

import base64
import copy
import inspect
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mpp_client._didkey import public_from_did_key
from mpp_client._exceptions import KeystoreError, PaymentError
from mpp_client.identity import (
    KDF_MEMLIMIT_MIN,
    KDF_MEMLIMIT_MODERATE,
    KDF_OPSLIMIT_MIN,
    KDF_OPSLIMIT_MODERATE,
    AgentKey,
    OwnerKey,
    sign_record,
    verify_record,
    verify_signature,
)
from mpp_client.protocol import b64url_encode, canonical_json

# RFC 8032 section 7.1, test 1.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_EMPTY_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d97"
    "4d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
SEED = bytes(range(32))
PASSPHRASE = "correct horse battery staple"
FAST: dict[str, Any] = {"opslimit": KDF_OPSLIMIT_MIN, "memlimit": KDF_MEMLIMIT_MIN}
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def secret_forms(seed: bytes) -> list[str]:
    """Every way a seed could plausibly leak into text."""
    return [
        seed.hex(),
        seed.hex().upper(),
        base64.b64encode(seed).decode(),
        base64.b64encode(seed).decode().rstrip("="),
        b64url_encode(seed),
        repr(seed)[2:-1],
    ]


def assert_no_secrets(text: str, *, seed: bytes = SEED, passphrase: str = PASSPHRASE) -> None:
    for form in secret_forms(seed):
        assert form not in text
    assert passphrase not in text


def assert_clean_error(exc: BaseException, **kwargs: Any) -> None:
    assert_no_secrets(f"{exc} {exc!r} {exc.args!r}", **kwargs)


@pytest.fixture
def agent() -> AgentKey:
    return AgentKey.from_seed(SEED)


@pytest.fixture
def keyfile(tmp_path: Path, agent: AgentKey) -> Path:
    path = tmp_path / "agent.key"
    agent.save(path, PASSPHRASE, **FAST)
    return path


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def edit(path: Path, **changes: Any) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


# -- keys and signatures -----------------------------------------------------


def test_did_is_an_ed25519_did_key_of_the_public_key(agent: AgentKey) -> None:
    assert agent.did.startswith("did:key:z6Mk")
    assert public_from_did_key(agent.did) == agent.public_key
    assert len(agent.public_key) == 32


def test_from_seed_matches_rfc8032_vector() -> None:
    key = AgentKey.from_seed(RFC8032_SEED)
    assert key.public_key == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_EMPTY_SIG


def test_from_seed_is_deterministic_and_generate_is_not() -> None:
    assert AgentKey.from_seed(SEED).did == AgentKey.from_seed(SEED).did
    assert AgentKey.generate().did != AgentKey.generate().did


@pytest.mark.parametrize("seed", [b"", SEED[:31], SEED + b"\0", "x" * 32])
def test_from_seed_refuses_wrong_length_without_echoing_it(seed: Any) -> None:
    with pytest.raises(ValueError, match="32 bytes") as info:
        AgentKey.from_seed(seed)
    if isinstance(seed, bytes) and seed:
        assert_clean_error(info.value, seed=seed[:31])


def test_keys_compare_by_identity_and_kind() -> None:
    assert AgentKey.from_seed(SEED) == AgentKey.from_seed(SEED)
    assert hash(AgentKey.from_seed(SEED)) == hash(AgentKey.from_seed(SEED))
    assert AgentKey.from_seed(SEED) != OwnerKey.from_seed(SEED)
    assert AgentKey.from_seed(SEED) != AgentKey.generate()


def test_sign_and_verify(agent: AgentKey) -> None:
    signature = agent.sign(b"pay 0.25 USD")
    assert len(signature) == 64
    assert verify_signature(agent.did, b"pay 0.25 USD", signature)


def test_verify_refuses_other_signer_tampered_message_and_signature(agent: AgentKey) -> None:
    signature = agent.sign(b"pay 0.25 USD")
    other = AgentKey.generate()
    assert not verify_signature(other.did, b"pay 0.25 USD", signature)
    assert not verify_signature(agent.did, b"pay 9.25 USD", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify_signature(agent.did, b"pay 0.25 USD", flipped)


@pytest.mark.parametrize(
    ("did", "message", "signature"),
    [
        ("did:key:z6Mk", b"m", bytes(64)),
        ("did:web:example.com", b"m", bytes(64)),
        ("", b"m", bytes(64)),
        (b"did:key:z6Mk", b"m", bytes(64)),
        (None, b"m", bytes(64)),
        ("AGENT", "m", bytes(64)),
        ("AGENT", b"m", "a" * 64),
        ("AGENT", b"m", bytes(63)),
        ("AGENT", b"m", bytes(65)),
        ("AGENT", None, None),
    ],
)
def test_verify_returns_false_for_bad_input(
    agent: AgentKey, did: Any, message: Any, signature: Any
) -> None:
    did = agent.did if did == "AGENT" else did
    assert verify_signature(did, message, signature) is False


def test_sign_takes_bytes_only(agent: AgentKey) -> None:
    with pytest.raises(TypeError):
        agent.sign("text")  # type: ignore[arg-type]


# -- the private key never leaks ---------------------------------------------


@pytest.mark.parametrize("cls", [AgentKey, OwnerKey])
def test_repr_and_str_show_class_and_did_only(cls: type[AgentKey | OwnerKey]) -> None:
    key = cls.from_seed(SEED)
    assert repr(key) == f"{cls.__name__}(did={key.did!r})"
    for text in (repr(key), str(key), f"{key}", "%s" % key, format(key, ""), repr([key])):  # noqa: UP031
        assert_no_secrets(text)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_keys_cannot_be_pickled(agent: AgentKey, protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled") as info:
        pickle.dumps(agent, protocol=protocol)
    assert_clean_error(info.value)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [agent]}, protocol=protocol)


def test_reduce_and_getstate_refuse(agent: AgentKey) -> None:
    with pytest.raises(TypeError):
        agent.__reduce__()
    with pytest.raises(TypeError):
        agent.__getstate__()


def test_copies_are_the_same_immutable_object(agent: AgentKey) -> None:
    assert copy.copy(agent) is agent
    assert copy.deepcopy({"k": agent})["k"] is agent


def test_no_instance_dict_to_dump(agent: AgentKey) -> None:
    assert not hasattr(agent, "__dict__")
    with pytest.raises(TypeError):
        vars(agent)


# -- keystore ----------------------------------------------------------------


@pytest.mark.parametrize("cls", [AgentKey, OwnerKey])
def test_keystore_round_trip(tmp_path: Path, cls: type[AgentKey | OwnerKey]) -> None:
    key = cls.from_seed(SEED)
    path = tmp_path / "k.json"
    key.save(path, PASSPHRASE, **FAST)
    loaded = cls.load(path, PASSPHRASE)
    assert type(loaded) is cls
    assert loaded == key
    assert loaded.sign(b"x") == key.sign(b"x")


def test_keystore_file_format_and_no_plaintext(keyfile: Path, agent: AgentKey) -> None:
    text = keyfile.read_text()
    document = json.loads(text)
    assert set(document) == {"version", "kind", "did", "kdf", "cipher", "nonce", "ciphertext"}
    assert document["version"] == 1
    assert document["kind"] == "agent"
    assert document["did"] == agent.did
    assert document["cipher"] == "xsalsa20poly1305"
    assert document["kdf"]["name"] == "argon2id"
    assert document["kdf"]["opslimit"] == KDF_OPSLIMIT_MIN
    assert document["kdf"]["memlimit"] == KDF_MEMLIMIT_MIN
    assert_no_secrets(text)


def test_default_kdf_cost_is_moderate() -> None:
    parameters = inspect.signature(AgentKey.save).parameters
    assert parameters["opslimit"].default == KDF_OPSLIMIT_MODERATE
    assert parameters["memlimit"].default == KDF_MEMLIMIT_MODERATE


def test_each_save_uses_fresh_salt_and_nonce(tmp_path: Path, agent: AgentKey) -> None:
    agent.save(tmp_path / "a", PASSPHRASE, **FAST)
    agent.save(tmp_path / "b", PASSPHRASE, **FAST)
    a, b = (json.loads((tmp_path / n).read_text()) for n in "ab")
    assert a["kdf"]["salt"] != b["kdf"]["salt"]
    assert a["nonce"] != b["nonce"]
    assert a["ciphertext"] != b["ciphertext"]


@posix_only
@pytest.mark.usefixtures("permissive_umask")
def test_keystore_is_mode_0600_whatever_the_umask(keyfile: Path) -> None:
    assert keyfile.stat().st_mode & 0o777 == 0o600


def test_refuses_to_overwrite_unless_asked(keyfile: Path) -> None:
    before = keyfile.read_bytes()
    other = AgentKey.generate()
    with pytest.raises(KeystoreError, match="already exists"):
        other.save(keyfile, PASSPHRASE, **FAST)
    assert keyfile.read_bytes() == before
    other.save(keyfile, PASSPHRASE, overwrite=True, **FAST)
    assert AgentKey.load(keyfile, PASSPHRASE) == other


def test_save_leaves_no_temporary_files(tmp_path: Path, keyfile: Path) -> None:
    with pytest.raises(KeystoreError):
        AgentKey.generate().save(keyfile, PASSPHRASE, **FAST)
    AgentKey.generate().save(keyfile, PASSPHRASE, overwrite=True, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.key"]


def test_save_into_missing_directory_is_a_keystore_error(tmp_path: Path, agent: AgentKey) -> None:
    with pytest.raises(KeystoreError, match="cannot write"):
        agent.save(tmp_path / "nope" / "k", PASSPHRASE, **FAST)


def test_wrong_passphrase(keyfile: Path) -> None:
    wrong = "Correct horse battery staple"
    with pytest.raises(KeystoreError, match="wrong passphrase") as info:
        AgentKey.load(keyfile, wrong)
    assert isinstance(info.value, PaymentError)
    assert_clean_error(info.value)
    assert wrong not in str(info.value)


def test_passphrase_is_unicode_normalized(tmp_path: Path, agent: AgentKey) -> None:
    path = tmp_path / "k"
    agent.save(path, "caf\u00e9", **FAST)  # composed é
    assert AgentKey.load(path, "cafe\u0301") == agent  # e + combining accent


def test_tampered_ciphertext(keyfile: Path) -> None:
    document = json.loads(keyfile.read_text())
    raw = bytearray(base64.urlsafe_b64decode(document["ciphertext"] + "=="))
    raw[5] ^= 0x01
    edit(keyfile, ciphertext=b64url_encode(bytes(raw)))
    with pytest.raises(KeystoreError, match="wrong passphrase, or the file was altered") as info:
        AgentKey.load(keyfile, PASSPHRASE)
    assert_clean_error(info.value)


def test_tampered_kdf_parameters_fail_decryption(keyfile: Path) -> None:
    document = json.loads(keyfile.read_text())
    edit(keyfile, kdf={**document["kdf"], "opslimit": KDF_OPSLIMIT_MIN + 1})
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        AgentKey.load(keyfile, PASSPHRASE)


def test_swapped_did_is_detected(keyfile: Path) -> None:
    edit(keyfile, did=AgentKey.generate().did)
    with pytest.raises(KeystoreError, match="altered") as info:
        AgentKey.load(keyfile, PASSPHRASE)
    assert_clean_error(info.value)


def test_swapped_kind_is_detected(keyfile: Path) -> None:
    edit(keyfile, kind="owner")
    with pytest.raises(KeystoreError, match="holds an owner key, not an agent key"):
        AgentKey.load(keyfile, PASSPHRASE)
    with pytest.raises(KeystoreError, match="altered"):
        OwnerKey.load(keyfile, PASSPHRASE)


def test_loading_the_other_kind_is_refused(keyfile: Path) -> None:
    with pytest.raises(KeystoreError, match="holds an agent key, not an owner key"):
        OwnerKey.load(keyfile, PASSPHRASE)


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o602, 0o644])
def test_group_or_world_accessible_file_is_refused(keyfile: Path, mode: int) -> None:
    keyfile.chmod(mode)
    with pytest.raises(KeystoreError, match="chmod 600") as info:
        AgentKey.load(keyfile, PASSPHRASE)
    assert f"{mode:04o}" in str(info.value)
    assert_clean_error(info.value)
    keyfile.chmod(0o600)
    assert AgentKey.load(keyfile, PASSPHRASE).did


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"version": True},
        {"kind": "robot"},
        {"cipher": "aes-gcm"},
        {"nonce": "short"},
        {"nonce": "AAAA===="},
        {"kdf": {"name": "scrypt"}},
        {"kdf": {"name": "argon2id", "opslimit": 10**9, "memlimit": 2**40, "salt": "A" * 22}},
        {"extra": 1},
        {"did": 7},
    ],
)
def test_malformed_keystore(keyfile: Path, change: dict[str, Any]) -> None:
    edit(keyfile, **change)
    with pytest.raises(KeystoreError) as info:
        AgentKey.load(keyfile, PASSPHRASE)
    assert_clean_error(info.value)


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"[]", b"\xff\xfe", b"{" * 500, b" " * 20000]
)
def test_unparseable_keystore(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeystoreError):
        AgentKey.load(path, PASSPHRASE)


def test_missing_keystore_or_directory(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot read"):
        AgentKey.load(tmp_path / "missing", PASSPHRASE)
    with pytest.raises(KeystoreError, match="cannot read"):
        AgentKey.load(tmp_path, PASSPHRASE)


def test_save_argument_checks(tmp_path: Path, agent: AgentKey) -> None:
    with pytest.raises(ValueError, match="empty passphrase"):
        agent.save(tmp_path / "k", "", **FAST)
    with pytest.raises(ValueError, match="opslimit"):
        agent.save(tmp_path / "k", PASSPHRASE, opslimit=0, memlimit=KDF_MEMLIMIT_MIN)
    with pytest.raises(ValueError, match="memlimit"):
        agent.save(tmp_path / "k", PASSPHRASE, opslimit=1, memlimit=1024)
    with pytest.raises(TypeError):
        agent.save(tmp_path / "k", b"bytes", **FAST)  # type: ignore[arg-type]
    assert not (tmp_path / "k").exists()


# -- record signatures --------------------------------------------------------

RECORD = {"id": "r1", "amount": "0.25 USD", "payee": "merchant", "tags": {"job": "42"}}


def test_record_round_trip(agent: AgentKey) -> None:
    signature = sign_record(agent, RECORD)
    assert isinstance(signature, str)
    assert "=" not in signature and "+" not in signature and "/" not in signature
    assert verify_record(agent.did, RECORD, signature)
    reordered = dict(reversed(list(RECORD.items())))
    assert verify_record(agent.did, reordered, signature)


@pytest.mark.parametrize(
    "tampered",
    [
        {**RECORD, "amount": "0.26 USD"},
        {**RECORD, "extra": None},
        {k: v for k, v in RECORD.items() if k != "tags"},
        {**RECORD, "tags": {"job": "43"}},
    ],
)
def test_record_tamper_is_detected(agent: AgentKey, tampered: dict[str, Any]) -> None:
    assert not verify_record(agent.did, tampered, sign_record(agent, RECORD))


def test_record_wrong_signer_or_signature(agent: AgentKey) -> None:
    signature = sign_record(agent, RECORD)
    assert not verify_record(AgentKey.generate().did, RECORD, signature)
    assert not verify_record(agent.did, RECORD, signature[:-2] + "AA")
    assert not verify_record(agent.did, RECORD, signature + "=")
    assert not verify_record(agent.did, RECORD, "")
    assert not verify_record(agent.did, RECORD, None)  # type: ignore[arg-type]
    assert not verify_record(agent.did, {"x": {1, 2}}, signature)
    assert not verify_record(agent.did, ["not", "a", "mapping"], signature)  # type: ignore[arg-type]


def test_record_signature_is_domain_separated(agent: AgentKey) -> None:
    signature = base64.urlsafe_b64decode(sign_record(agent, RECORD) + "==")
    assert not verify_signature(agent.did, canonical_json(RECORD), signature)
    assert verify_signature(
        agent.did,
        canonical_json({"type": "mpp-client/record/v1", "record": RECORD}),
        signature,
    )


def test_only_agents_sign_records() -> None:
    with pytest.raises(TypeError):
        sign_record(OwnerKey.generate(), RECORD)  # type: ignore[arg-type]
