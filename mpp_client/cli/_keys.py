"""``mpp key new|show`` and ``mpp mandate issue|show|verify|revoke``.

Keys are written encrypted (the argon2id keystore, mode 0600) or into the OS
keyring; what is printed is the public ``did:key`` and where the key lives,
never the key. Mandates are the owner's signed delegation of a policy to an
agent's key; ``verify`` checks them as an agent would before paying.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from ._common import (
    PASSPHRASE_ENV,
    fail,
    key_location,
    load_agent_key,
    load_owner_key,
    out,
    parse_when,
    passphrase,
    print_json,
    safe,
    say,
)
from ._exit import ExitCode

if TYPE_CHECKING:
    from ..mandate import Mandate

__all__ = [
    "key_new",
    "key_show",
    "mandate_issue",
    "mandate_revoke",
    "mandate_show",
    "mandate_verify",
]

#: The keystore's Argon2id cost presets, by name.
KDF_PRESETS = ("moderate", "interactive", "min")


def _kdf(name: str) -> dict[str, int]:
    from ..identity import (  # noqa: PLC0415
        KDF_MEMLIMIT_INTERACTIVE,
        KDF_MEMLIMIT_MIN,
        KDF_MEMLIMIT_MODERATE,
        KDF_OPSLIMIT_INTERACTIVE,
        KDF_OPSLIMIT_MIN,
        KDF_OPSLIMIT_MODERATE,
    )

    presets = {
        "moderate": (KDF_OPSLIMIT_MODERATE, KDF_MEMLIMIT_MODERATE),
        "interactive": (KDF_OPSLIMIT_INTERACTIVE, KDF_MEMLIMIT_INTERACTIVE),
        "min": (KDF_OPSLIMIT_MIN, KDF_MEMLIMIT_MIN),
    }
    if name not in presets:
        fail(f"--kdf is one of {', '.join(KDF_PRESETS)}, not {name!r}")
    ops, mem = presets[name]
    return {"opslimit": ops, "memlimit": mem}


def _key_class(kind: str) -> Any:
    from ..identity import AgentKey, OwnerKey  # noqa: PLC0415

    classes = {"agent": AgentKey, "owner": OwnerKey}
    if kind not in classes:
        fail(f"--kind is agent or owner, not {kind!r}")
    return classes[kind]


# -- keys ---------------------------------------------------------------------------------


def key_new(
    where: str,
    *,
    kind: str,
    overwrite: bool,
    kdf: str,
    passphrase_env: str | None,
    passphrase_keyring: str | None,
    as_json: bool,
) -> ExitCode:
    """A fresh key, written to an encrypted keystore file or the OS keyring."""
    cls = _key_class(kind)
    path, entry = key_location(where)
    key = cls.generate()
    if entry is not None:
        key.save_to_keyring(*entry, overwrite=overwrite)
        location = f"keyring {entry[0]}/{entry[1]}"
    else:
        assert path is not None
        if path.exists() and not overwrite:
            fail(f"{str(path)!r} exists; pass --overwrite to replace it (its key would be lost)")
        secret = passphrase(
            f"the new {kind} key",
            env=passphrase_env,
            keyring_entry=passphrase_keyring,
            confirm=True,
        )
        key.save(path, secret, overwrite=overwrite, **_kdf(kdf))
        location = f"keystore {path}"
    if as_json:
        print_json({"kind": kind, "did": key.did, "location": location})
    else:
        out().print(Text(key.did))
        say(f"new {kind} key in {location}")
    return ExitCode.OK


def key_show(
    where: str,
    *,
    kind: str,
    public: bool,
    passphrase_env: str | None,
    passphrase_keyring: str | None,
    as_json: bool,
) -> ExitCode:
    """The key's ``did:key`` and where it lives (unlocked, unless ``--public``)."""
    path, entry = key_location(where)
    if public:
        if path is None:
            fail("--public reads a keystore file; a keyring entry must be unlocked")
        try:
            header = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            fail(f"{str(path)!r} is not a keystore file")
        if not isinstance(header, dict) or not isinstance(header.get("did"), str):
            fail(f"{str(path)!r} is not a keystore file")
        info = {
            "kind": str(header.get("kind")),
            "did": header["did"],
            "location": f"keystore {path}",
            "unlocked": False,
        }
    else:
        loader = load_agent_key if kind == "agent" else load_owner_key
        _key_class(kind)
        key = loader(where, env=passphrase_env, keyring_entry=passphrase_keyring)
        place = f"keystore {path}" if path is not None else f"keyring {entry[0]}/{entry[1]}"  # type: ignore[index]
        info = {"kind": kind, "did": key.did, "location": place, "unlocked": True}
    if as_json:
        print_json(info)
        return ExitCode.OK
    table = Table(show_header=False)
    table.add_column()
    table.add_column(overflow="fold")
    for name in ("kind", "did", "location"):
        table.add_row(name, safe(info[name], 300))
    table.add_row("unlocked", "yes" if info["unlocked"] else "no (read from the file, not checked)")
    out().print(table)
    return ExitCode.OK


# -- mandates -------------------------------------------------------------------------------


def mandate_issue(
    *,
    owner_key: str,
    agent: str,
    policy_file: Path,
    expires: str,
    not_before: str | None,
    mandate_id: str | None,
    output: Path | None,
    overwrite: bool,
    passphrase_env: str | None,
    passphrase_keyring: str | None,
) -> ExitCode:
    from ..mandate import Mandate  # noqa: PLC0415
    from ..policy import Policy  # noqa: PLC0415

    policy = Policy.from_file(policy_file)  # validated before anything is signed
    agent_did = _agent_did(agent)
    owner = load_owner_key(owner_key, env=passphrase_env, keyring_entry=passphrase_keyring)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        mandate = Mandate.issue(
            owner,
            agent_did,
            policy.to_dict(),
            expires_at=parse_when(expires, now=now),
            not_before=parse_when(not_before, now=now) if not_before else None,
            id=mandate_id,
            issued_at=now,
        )
    except ValueError as exc:
        fail(str(exc))
    if output is None or str(output) == "-":
        out().print(Text(mandate.to_json()))
    else:
        mandate.save(output, overwrite=overwrite)
        say(f"mandate {mandate.id} for {agent_did} until {mandate.expires_at:%Y-%m-%d %H:%M} UTC")
        say(f"written to {output}")
    return ExitCode.OK


def _agent_did(agent: str) -> str:
    """``did:key:...`` as given, or the public did of an agent keystore file."""
    if agent.startswith("did:key:"):
        return agent
    path = Path(agent).expanduser()
    if not path.is_file():
        fail(f"--agent is a did:key or an agent keystore file, not {agent!r}")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        fail(f"{agent!r} is not a keystore file")
    did = header.get("did") if isinstance(header, dict) else None
    if not isinstance(did, str) or header.get("kind") != "agent":
        fail(f"{agent!r} is not an agent keystore file")
    return did


def mandate_show(path: Path, *, as_json: bool) -> ExitCode:
    from ..mandate import Mandate  # noqa: PLC0415

    mandate = Mandate.from_file(path)
    if as_json:
        print_json(_mandate_json(mandate))
        return ExitCode.OK
    table = Table(show_header=False, title="Mandate (not verified: use mandate verify)")
    table.add_column()
    table.add_column(overflow="fold")
    for name, value in _mandate_json(mandate).items():
        if name != "policy":
            table.add_row(name, safe(value, 300))
    out().print(table)
    out().print(safe(json.dumps(mandate.policy, indent=2, ensure_ascii=True), None))
    return ExitCode.OK


def _mandate_json(mandate: Mandate) -> dict[str, Any]:
    return {
        "id": mandate.id,
        "owner": mandate.owner,
        "agent": mandate.agent,
        "issued_at": mandate.issued_at.isoformat(),
        "not_before": mandate.not_before.isoformat(),
        "expires_at": mandate.expires_at.isoformat(),
        "policy": mandate.policy,
    }


def mandate_verify(
    path: Path,
    *,
    owners: list[str],
    agent: str,
    revocations: Path | None,
    as_json: bool,
) -> ExitCode:
    from .._exceptions import MandateError  # noqa: PLC0415
    from ..mandate import Mandate, Revocations  # noqa: PLC0415
    from ..policy import Policy  # noqa: PLC0415

    if not owners:
        fail("give the owner keys you trust: --owner did:key:...")
    mandate = Mandate.from_file(path)
    agent_did = _agent_did(agent)
    revoked = Revocations.from_file(revocations) if revocations is not None else None
    try:
        mandate.verify(owner_keys=owners, agent=agent_did, now=datetime.now(UTC), revoked=revoked)
        Policy.from_mapping(mandate.policy)
    except MandateError as exc:
        if as_json:
            print_json(
                {"ok": False, "id": mandate.id, "error": type(exc).__name__, "reason": exc.message}
            )
        else:
            out().print(
                Text("mandate does not verify: ", style="bold red") + safe(exc.message, 500)
            )
        return ExitCode.VERIFICATION_FAILED
    if as_json:
        print_json({"ok": True, **_mandate_json(mandate)})
    else:
        out().print(
            Text("mandate verifies: ", style="bold green")
            + safe(
                f"{mandate.id} from {mandate.owner} to {mandate.agent}, "
                f"valid until {mandate.expires_at.isoformat()}",
                600,
            )
        )
    return ExitCode.OK


def mandate_revoke(
    ids: list[str],
    *,
    owner_key: str,
    existing: Path | None,
    output: Path,
    passphrase_env: str | None,
    passphrase_keyring: str | None,
) -> ExitCode:
    """A new signed revocation list: the ids of ``existing`` (verified) plus ``ids``."""
    from ..mandate import Revocations  # noqa: PLC0415

    owner = load_owner_key(owner_key, env=passphrase_env, keyring_entry=passphrase_keyring)
    keep: set[str] = set()
    if existing is not None and existing.exists():
        previous = Revocations.from_file(existing)
        previous.verify(owner_keys=[owner.did])
        keep = set(previous.ids)
    revocations = Revocations.issue(owner, sorted(keep | set(ids)))
    revocations.save(output, overwrite=True)
    say(f"revocation list of {len(revocations)} mandate(s) signed by {owner.did}")
    say(f"written to {output}")
    return ExitCode.OK


__all__ += ["KDF_PRESETS", "PASSPHRASE_ENV"]
