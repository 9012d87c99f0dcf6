"""What every command shares: output, errors, secrets, and loading policies, keys and wallets.

Output rules. Data goes to stdout (a table, JSON, a response body), messages
to stderr, so ``mpp ... --json | jq`` sees only JSON. Text that a server or
a file chose is passed through :func:`safe` (control and format characters
escaped, rich markup not interpreted) before it reaches a terminal; JSON is
written with ``ensure_ascii`` so it carries no raw control characters either.

Secrets. A passphrase comes from the environment variable named by
``--passphrase-env`` (``MPP_PASSPHRASE`` by default), from an OS keyring
entry (``--passphrase-keyring SERVICE/NAME``), or from a hidden prompt, in
that order; it is never echoed, logged or put in an error. A key can also
live in the keyring itself (``keyring:SERVICE/NAME`` wherever a key file is
asked for).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from .._exceptions import InsecureTransport, KeystoreError, PaymentError
from .._text import printable
from ..money import Amount
from ._exit import ExitCode, exit_code

if TYPE_CHECKING:
    from ..identity import AgentKey, OwnerKey
    from ..methods import PaymentMethod
    from ..policy import Policy

__all__ = [
    "PASSPHRASE_ENV",
    "CliError",
    "fail",
    "guarded",
    "load_agent_key",
    "load_owner_key",
    "load_policy",
    "make_wallets",
    "out",
    "parse_when",
    "passphrase",
    "print_json",
    "safe",
    "say",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The default environment variable holding a keystore passphrase.
PASSPHRASE_ENV = "MPP_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
#: The environment variable holding the passphrase of EVM/Tempo wallet keystores.
WALLET_PASSPHRASE_ENV = "MPP_WALLET_PASSPHRASE"  # noqa: S105 - a name


def out() -> Console:
    """The console for data (stdout).

    On a terminal, tables fit its width; into a pipe or a file (no terminal,
    no ``$COLUMNS``) they are laid out 160 columns wide, so that ids and
    amounts stay whole on one line for grep.
    """
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = 160
    return console


def err() -> Console:
    """The console for messages (stderr)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def safe(value: object, limit: int | None = 200) -> Text:
    """``value`` as rich text that cannot forge lines, paint the terminal or inject markup."""
    return Text(printable("" if value is None else value, limit))


def say(message: str | Text, *, quiet: bool = False) -> None:
    """A message on stderr (suppressed by ``--silent``). ``message`` is plain text."""
    if quiet:
        return
    err().print(message if isinstance(message, Text) else safe(message, None))


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout, ASCII only (so no raw control character reaches a terminal)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=True, default=str) + "\n")
    sys.stdout.flush()


class CliError(Exception):
    """A failure to report on stderr with an exit code (the message is safe to show)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    raise CliError(message, code)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a command; turn every error into one escaped line on stderr and its exit code.

    Library errors carry messages written to be shown (never a secret);
    anything else is named by its type only, since its text could hold
    anything.
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except CliError as exc:
            _report(exc.message)
            raise typer.Exit(int(exc.code)) from None
        except PaymentError as exc:
            _report(f"{type(exc).__name__}: {exc.message}")
            for reason in getattr(exc, "reasons", ())[:10]:
                if reason not in exc.message:
                    _report(f"  - {reason}")
            if isinstance(exc, InsecureTransport) and "plain HTTP" in exc.message:
                _report("(for a loopback test server: --insecure-localhost)")
            raise typer.Exit(int(exit_code(exc))) from None
        except KeyboardInterrupt:
            _report("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except OSError as exc:
            where = f" {exc.filename!r}" if exc.filename else ""
            _report(f"{type(exc).__name__}{where}: {exc.strerror or 'failed'}")
            raise typer.Exit(int(exit_code(exc))) from None
        except Exception as exc:
            import httpx  # noqa: PLC0415

            if isinstance(exc, httpx.HTTPError):
                # httpx messages name the URL and the failure, never a header value.
                _report(f"{type(exc).__name__}: {exc}")
            else:
                _report(f"unexpected error: {type(exc).__name__}")
            raise typer.Exit(int(exit_code(exc))) from None

    return run


def _report(message: str) -> None:
    err().print(Text("mpp: ", style="bold red") + safe(message, 2000))


# -- secrets ----------------------------------------------------------------------------


def interactive() -> bool:
    """True when a person can answer a prompt (stdin is a terminal)."""
    return sys.stdin.isatty()


def passphrase(
    what: str,
    *,
    env: str | None = PASSPHRASE_ENV,
    keyring_entry: str | None = None,
    confirm: bool = False,
) -> str:
    """The passphrase for ``what``: the environment, the OS keyring, or a hidden prompt."""
    if env:
        value = os.environ.get(env)
        if value:
            return value
    if keyring_entry:
        service, name = _keyring_entry(keyring_entry)
        try:
            import keyring  # noqa: PLC0415 - the keyring extra

            value = keyring.get_password(service, name)
        except ImportError:
            fail(
                'reading a passphrase from the OS keyring needs: pip install "mpp-client[keyring]"'
            )
        except Exception as exc:
            fail(f"cannot read the keyring entry {service!r}/{name!r} ({type(exc).__name__})")
        if not value:
            fail(f"the keyring has no passphrase under {service!r}/{name!r}")
        return value
    if not interactive():
        hint = f"set ${env}" if env else "use --passphrase-keyring"
        fail(f"a passphrase is needed for {what} and there is no terminal to ask on: {hint}")
    value = typer.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm)
    if not value:
        fail("the passphrase is empty")
    return str(value)


def _keyring_entry(spec: str) -> tuple[str, str]:
    service, sep, name = spec.partition("/")
    if not sep or not service or not name:
        fail(f"a keyring entry is written SERVICE/NAME, not {spec!r}")
    return service, name


def key_location(spec: str) -> tuple[Path | None, tuple[str, str] | None]:
    """``keyring:SERVICE/NAME`` or a keystore file path."""
    if spec.startswith("keyring:"):
        return None, _keyring_entry(spec[len("keyring:") :])
    return Path(spec).expanduser(), None


def load_agent_key(
    spec: str, *, env: str | None = PASSPHRASE_ENV, keyring_entry: str | None = None
) -> AgentKey:
    from ..identity import AgentKey  # noqa: PLC0415 - pynacl only when keys are used

    path, entry = key_location(spec)
    if entry is not None:
        return AgentKey.from_keyring(*entry)
    assert path is not None
    _exists(path, "agent key")
    return AgentKey.load(path, passphrase(str(path), env=env, keyring_entry=keyring_entry))


def load_owner_key(
    spec: str, *, env: str | None = PASSPHRASE_ENV, keyring_entry: str | None = None
) -> OwnerKey:
    from ..identity import OwnerKey  # noqa: PLC0415

    path, entry = key_location(spec)
    if entry is not None:
        return OwnerKey.from_keyring(*entry)
    assert path is not None
    _exists(path, "owner key")
    return OwnerKey.load(path, passphrase(str(path), env=env, keyring_entry=keyring_entry))


def _exists(path: Path, what: str) -> None:
    if not path.is_file():
        fail(f"{what} file {str(path)!r} does not exist")


# -- policies and mandates ------------------------------------------------------------------


def load_policy(
    *,
    policy: Path | None,
    mandate: Path | None,
    owners: Iterable[str],
    agent: AgentKey | None,
    revocations: Path | None,
) -> Policy | None:
    """The policy to pay under: a file, or a mandate that verifies for ``agent``."""
    from ..policy import Policy  # noqa: PLC0415 - pydantic only when a policy is used

    if policy is not None and mandate is not None:
        fail("give --policy or --mandate, not both")
    if policy is not None:
        _exists(policy, "policy")
        return Policy.from_file(policy)
    if mandate is None:
        return None
    from ..mandate import Mandate, Revocations  # noqa: PLC0415

    trusted = list(owners)
    if not trusted:
        fail("--mandate needs the owner keys you trust: --owner did:key:...")
    if agent is None:
        fail("--mandate needs the agent's key: --agent-key FILE (or keyring:SERVICE/NAME)")
    _exists(mandate, "mandate")
    revoked = Revocations.from_file(revocations) if revocations is not None else None
    return Policy.from_mandate(
        Mandate.from_file(mandate), owner_keys=trusted, agent=agent, revoked=revoked
    )


# -- wallets --------------------------------------------------------------------------------


def make_wallets(
    specs: Iterable[str], *, chain_id: int | None, rpc_url: str | None
) -> list[PaymentMethod]:
    """Wallets from ``--wallet`` specs, in preference order.

    ``dev`` (signed vouchers, no money), ``evm:KEYSTORE`` and
    ``tempo:KEYSTORE`` (Web3 Secret Storage files; the passphrase from
    ``$MPP_WALLET_PASSPHRASE`` or a prompt).
    """
    from ..methods import DevWallet  # noqa: PLC0415

    wallets: list[PaymentMethod] = []
    for spec in specs:
        kind, _, where = spec.partition(":")
        if kind == "dev" and not where:
            wallets.append(DevWallet())
        elif kind in ("evm", "tempo") and where:
            try:
                wallets.append(_eth_wallet(kind, Path(where).expanduser(), chain_id, rpc_url))
            except (TypeError, ValueError) as exc:
                # The wallets' own messages name the setting, never the key.
                fail(f"--wallet {kind}: {exc}")
        else:
            fail(f"unknown wallet {spec!r}: use dev, evm:KEYSTORE or tempo:KEYSTORE")
    return wallets


def _eth_wallet(kind: str, path: Path, chain_id: int | None, rpc_url: str | None) -> PaymentMethod:
    _exists(path, f"{kind} keystore")
    secret = passphrase(str(path), env=WALLET_PASSPHRASE_ENV)
    if kind == "evm":
        from ..methods import EvmWallet  # noqa: PLC0415 - the evm extra

        options: dict[str, Any] = {}
        if chain_id is not None:
            options["chain_ids"] = [chain_id]
            if rpc_url is not None:
                options["rpc_urls"] = {chain_id: rpc_url}
        return EvmWallet.from_keystore(path, secret, **options)
    from ..methods import TempoWallet  # noqa: PLC0415 - the tempo extra

    return TempoWallet.from_keystore(path, secret, chain_id=chain_id, rpc_url=rpc_url)


# -- small parsers ------------------------------------------------------------------------


def parse_tags(tags: Iterable[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            fail(f"tags are written KEY=VALUE, not {tag!r}")
        parsed[key] = value
    return parsed


def parse_amount(text: str, what: str) -> Amount:
    try:
        return Amount.parse(text)
    except ValueError as exc:
        fail(f"{what}: {exc}")


def parse_when(text: str, *, now: datetime | None = None, past: bool = False) -> datetime:
    """An RFC 3339 time, a date (``2025-01-31``), or a span (``30d``, ``12h``).

    A span counts forward from now (an expiry), or back with ``past`` (``--since 30d``).
    """
    from ..protocol import parse_rfc3339  # noqa: PLC0415

    moment = now or datetime.now(UTC)
    span = _span(text)
    if span is not None:
        return moment - span if past else moment + span
    try:
        return parse_rfc3339(text)
    except ValueError:
        pass
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        fail(f"cannot read {text!r} as a time (RFC 3339, YYYY-MM-DD, or a span like 30d)")
    return day.replace(tzinfo=UTC)


def _span(text: str) -> timedelta | None:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if len(text) >= 2 and text[:-1].isdigit() and text[-1] in units:
        return timedelta(seconds=int(text[:-1]) * units[text[-1]])
    return None


def duration(delta: timedelta) -> str:
    """``timedelta(hours=24)`` as ``24h``, ``timedelta(days=30)`` as ``30d``."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_kind(value: str, allowed: Mapping[str, Any], what: str) -> None:
    if value not in allowed:
        fail(f"{what} must be one of {', '.join(sorted(allowed))}, not {value!r}")


def keystore_error(exc: KeystoreError) -> NoReturn:
    raise CliError(exc.message, ExitCode.USAGE) from None
