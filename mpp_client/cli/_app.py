"""The ``mpp`` commands, wired with typer. The work is in the sibling modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .._version import __version__
from ._common import PASSPHRASE_ENV, fail, guarded, load_policy, out, print_json, safe, say
from ._exit import EXIT_CODES, ExitCode

__all__ = ["app"]

_EPILOG = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="mpp",
    help=(
        "Pay for HTTP APIs (402 Payment) under a spending policy, see what a call would "
        "cost, and look after the ledger, keys and mandates."
    ),
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
ledger_app = typer.Typer(help="Reports, verification, export and resolution of the spend ledger.")
mandate_app = typer.Typer(help="Mandates: an owner's signed delegation of a policy to an agent.")
key_app = typer.Typer(help="Agent and owner keys (Ed25519), in an encrypted keystore or keyring.")
policy_app = typer.Typer(help="Spending policies.")
for sub, name in (
    (ledger_app, "ledger"),
    (mandate_app, "mandate"),
    (key_app, "key"),
    (policy_app, "policy"),
):
    sub.info.no_args_is_help = True
    app.add_typer(sub, name=name)


def _version(value: bool) -> None:
    if value:
        out().print(f"mpp (mpp-client) {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """mpp: HTTP that pays, under a spending policy."""


# -- shared options -------------------------------------------------------------------------

Url = Annotated[str, typer.Argument(help="The URL to request.")]
Header = Annotated[
    list[str] | None, typer.Option("-H", "--header", help="'Name: value' (repeatable).")
]
Data = Annotated[
    str | None, typer.Option("-d", "--data", help="Request body; @FILE reads a file, @- stdin.")
]
JsonBody = Annotated[
    str | None,
    typer.Option("-J", "--json-body", help="JSON request body (@FILE, @-); sets Content-Type."),
]
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write the body to FILE ('-': stdout).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PolicyFile = Annotated[
    Path | None, typer.Option("--policy", help="Pay under this policy (TOML or JSON).")
]
MandateFile = Annotated[
    Path | None, typer.Option("--mandate", help="Pay under this owner-signed mandate.")
]
Owner = Annotated[
    list[str] | None,
    typer.Option("--owner", help="A trusted owner did:key for --mandate (repeatable)."),
]
AgentKeyOpt = Annotated[
    str | None,
    typer.Option("--agent-key", help="The agent's keystore FILE, or keyring:SERVICE/NAME."),
]
RevocationsFile = Annotated[
    Path | None, typer.Option("--revocations", help="The owner's signed revocation list.")
]
Wallet = Annotated[
    list[str] | None,
    typer.Option(
        "--wallet", help="dev, evm:KEYSTORE or tempo:KEYSTORE (repeatable, preferred first)."
    ),
]
ChainId = Annotated[int | None, typer.Option("--chain-id", help="Chain id for evm/tempo wallets.")]
RpcUrl = Annotated[str | None, typer.Option("--rpc-url", help="JSON-RPC URL for evm/tempo.")]
LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        envvar="MPP_CLIENT_LEDGER",
        help="SQLite file or postgresql:// URL (default: the user's data directory).",
    ),
]
Max = Annotated[str | None, typer.Option("--max", help="Pay at most this, e.g. '0.10 USD'.")]
Payee = Annotated[str | None, typer.Option("--payee", help="Pay only this payee.")]
Purpose = Annotated[str | None, typer.Option("--purpose", help="Why (kept with the payment).")]
Tag = Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE (repeatable).")]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure-localhost", help="Let credentials go over plain HTTP to loopback (tests)."
    ),
]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds per HTTP exchange.")]
PassEnv = Annotated[
    str,
    typer.Option("--passphrase-env", help="Environment variable holding a keystore passphrase."),
]
PassKeyring = Annotated[
    str | None,
    typer.Option(
        "--passphrase-keyring", help="Read the passphrase from the OS keyring SERVICE/NAME."
    ),
]


def _payer(kw: dict[str, Any]) -> Any:
    from ._http import Payer  # noqa: PLC0415

    return Payer(
        wallets=tuple(kw["wallet"] or ("dev",)),
        policy=kw["policy"],
        mandate=kw["mandate"],
        owners=tuple(kw["owner"] or ()),
        agent_key=kw["agent_key"],
        revocations=kw["revocations"],
        ledger=kw["ledger"],
        chain_id=kw["chain_id"],
        rpc_url=kw["rpc_url"],
        insecure_localhost=kw["insecure_localhost"],
        passphrase_env=kw["passphrase_env"] or None,
        passphrase_keyring=kw["passphrase_keyring"],
    )


def _spec(kw: dict[str, Any], method: str) -> Any:
    from ._http import RequestSpec  # noqa: PLC0415

    return RequestSpec(
        method=method,
        url=kw["url"],
        headers=tuple(kw["header"] or ()),
        data=kw["data"],
        json_body=kw["json_body"],
        max_amount=kw["max_amount"],
        payee=kw["payee"],
        purpose=kw["purpose"],
        tags=tuple(kw["tag"] or ()),
    )


def _http(method: str | None, **kw: Any) -> None:
    from ._http import quote, send  # noqa: PLC0415

    if method is None:
        method = "POST" if kw["data"] is not None or kw["json_body"] is not None else "GET"
    spec = _spec(kw, method.upper())
    payer = _payer(kw)
    if kw["dry_run"]:
        code = quote(spec, payer, timeout=kw["timeout"], as_json=kw["as_json"])
    else:
        code = send(
            spec,
            payer,
            output=kw["output"],
            include=kw["include"],
            fail_on_error=kw["fail_on_error"],
            follow=kw["location"],
            timeout=kw["timeout"],
            as_json=kw["as_json"],
            quiet=kw["silent"],
        )
    raise typer.Exit(int(code))


# -- get / post / request / quote / discover ----------------------------------------------------


@app.command("request")
@guarded
def request_command(  # noqa: PLR0917 - one parameter per option
    url: Url,
    method: Annotated[
        str | None, typer.Option("-X", "--request", help="HTTP method (default GET, or POST)")
    ] = None,
    header: Header = None,
    data: Data = None,
    json_body: JsonBody = None,
    output: Output = None,
    include: Annotated[bool, typer.Option("-i", "--include", help="Print the headers.")] = False,
    fail_on_error: Annotated[
        bool, typer.Option("-f", "--fail", help="Exit 22 on an HTTP error status.")
    ] = False,
    location: Annotated[bool, typer.Option("-L", "--location", help="Follow redirects.")] = False,
    silent: Annotated[bool, typer.Option("-s", "--silent", help="No messages on stderr.")] = False,
    as_json: AsJson = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be paid; pay nothing.")
    ] = False,
    max_amount: Max = None,
    payee: Payee = None,
    purpose: Purpose = None,
    tag: Tag = None,
    policy: PolicyFile = None,
    mandate: MandateFile = None,
    owner: Owner = None,
    agent_key: AgentKeyOpt = None,
    revocations: RevocationsFile = None,
    wallet: Wallet = None,
    chain_id: ChainId = None,
    rpc_url: RpcUrl = None,
    ledger: LedgerOpt = None,
    insecure_localhost: Insecure = False,
    timeout: Timeout = 30.0,
    passphrase_env: PassEnv = PASSPHRASE_ENV,
    passphrase_keyring: PassKeyring = None,
) -> None:
    """Send a request (curl-like), paying a 402 under the policy."""
    kw = dict(locals())
    _http(kw.pop("method"), **kw)


def _fixed(method: str, doc: str) -> Any:
    """``get``/``post``: ``request`` with the method fixed (same options, minus -X)."""
    import inspect  # noqa: PLC0415

    def command(**kw: Any) -> None:
        _http(method, **kw)

    signature = inspect.signature(request_command, eval_str=True)
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name != "method"]
    )
    command.__annotations__ = {
        k: v for k, v in request_command.__annotations__.items() if k != "method"
    }
    command.__doc__ = doc
    command.__name__ = f"{method.lower()}_command"
    return guarded(command)


app.command("get")(_fixed("GET", "GET a URL (curl-like), paying a 402 under the policy."))
app.command("post")(_fixed("POST", "POST to a URL (curl-like), paying a 402 under the policy."))


@app.command("quote")
@guarded
def quote_command(  # noqa: PLR0917 - one parameter per option
    url: Url,
    method: Annotated[str, typer.Option("-X", "--request", help="HTTP method.")] = "GET",
    header: Header = None,
    data: Data = None,
    json_body: JsonBody = None,
    as_json: AsJson = False,
    max_amount: Max = None,
    payee: Payee = None,
    purpose: Purpose = None,
    tag: Tag = None,
    policy: PolicyFile = None,
    mandate: MandateFile = None,
    owner: Owner = None,
    agent_key: AgentKeyOpt = None,
    revocations: RevocationsFile = None,
    wallet: Wallet = None,
    chain_id: ChainId = None,
    rpc_url: RpcUrl = None,
    ledger: LedgerOpt = None,
    insecure_localhost: Insecure = False,
    timeout: Timeout = 30.0,
    passphrase_env: PassEnv = PASSPHRASE_ENV,
    passphrase_keyring: PassKeyring = None,
) -> None:
    """What a request would cost: every offer, the one chosen, the decision. Pays nothing.

    Exits 0 when the request would be paid (or needs no payment), 3 when not.
    """
    from ._http import quote  # noqa: PLC0415

    kw = dict(locals())
    code = quote(_spec(kw, method.upper()), _payer(kw), timeout=timeout, as_json=as_json)
    raise typer.Exit(int(code))


@app.command("discover")
@guarded
def discover_command(
    origin: Annotated[str, typer.Argument(help="The service's origin (https://api.example.com).")],
    header: Header = None,
    as_json: AsJson = False,
    timeout: Timeout = 30.0,
) -> None:
    """The priced operations a service advertises in /openapi.json (advisory only)."""
    from ._http import discover  # noqa: PLC0415

    raise typer.Exit(
        int(discover(origin, timeout=timeout, as_json=as_json, headers=tuple(header or ())))
    )


# -- ledger ---------------------------------------------------------------------------------


def _report_policy(policy: Path | None) -> Any:
    return load_policy(policy=policy, mandate=None, owners=(), agent=None, revocations=None)


@ledger_app.command("report")
@guarded
def ledger_report(
    ledger: LedgerOpt = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Show this policy's budgets and their room.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only payments since: 30d, 12h, or a date.")
    ] = None,
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Spend by payee, method and day; each budget with what remains."""
    from ._ledger import report  # noqa: PLC0415

    if as_json and as_csv:
        fail("give --json or --csv, not both")
    code = report(
        ledger, policy=_report_policy(policy), since=since, as_json=as_json, as_csv=as_csv
    )
    raise typer.Exit(int(code))


@ledger_app.command("verify")
@guarded
def ledger_verify(
    ledger: LedgerOpt = None,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="An agent did:key whose signatures count (repeatable)."),
    ] = None,
    require_signatures: Annotated[
        bool, typer.Option("--require-signatures", help="Every event must be signed.")
    ] = False,
    as_json: AsJson = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Check the hash-chained, signed audit log against the spend state (exit 6 if not)."""
    from ._ledger import verify  # noqa: PLC0415

    code = verify(
        ledger,
        trusted=list(trust or ()),
        require_signatures=require_signatures,
        as_json=as_json,
        quiet=quiet,
    )
    raise typer.Exit(int(code))


@ledger_app.command("export")
@guarded
def ledger_export(
    ledger: LedgerOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (the audit log) or csv.")] = "jsonl",
    output: Output = None,
) -> None:
    """Export the audit log (JSON Lines) or the payments (CSV)."""
    from ._ledger import export  # noqa: PLC0415

    raise typer.Exit(int(export(ledger, fmt=fmt, output=output)))


@ledger_app.command("resolve")
@guarded
def ledger_resolve(
    record_id: Annotated[str, typer.Argument(help="The ledger record id.")],
    paid: Annotated[
        bool | None,
        typer.Option("--paid/--not-paid", help="It was paid (committed) / it was not (released)."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")] = "",
    ledger: LedgerOpt = None,
) -> None:
    """Settle an unknown outcome: --paid counts it as spent, --not-paid releases it."""
    from ._ledger import resolve  # noqa: PLC0415

    if paid is None:
        fail("say what happened: --paid or --not-paid")
    why = reason or ("resolved as paid by the operator" if paid else "resolved as not paid")
    raise typer.Exit(int(resolve(ledger, record_id, paid=paid, reason=why)))


@ledger_app.command("path")
@guarded
def ledger_path_command(ledger: LedgerOpt = None) -> None:
    """Print where the ledger is (--ledger, $MPP_CLIENT_LEDGER, or the default)."""
    from ._ledger import ledger_path  # noqa: PLC0415

    out().print(safe(ledger_path(ledger), None))


@ledger_app.command("serve")
@guarded
def ledger_serve(
    ledger: LedgerOpt = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Show this policy's budgets.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 8402,
) -> None:
    """A local read-only dashboard over the ledger (127.0.0.1 by default)."""
    from ._dashboard import Dashboard  # noqa: PLC0415
    from ._ledger import ledger_path, open_for_cli  # noqa: PLC0415

    try:
        import uvicorn  # noqa: PLC0415
    except ImportError:
        fail('mpp ledger serve needs uvicorn: pip install "mpp-client[dashboard]"')
    from .._flow import is_loopback  # noqa: PLC0415

    dashboard = Dashboard(
        open_for_cli(ledger),
        policy=_report_policy(policy),
        title=ledger_path(ledger),
        loopback_only=is_loopback(host),
    )
    if not is_loopback(host):
        say(f"warning: serving the ledger on {host}, beyond this machine", quiet=False)
    say(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(dashboard, host=host, port=port, log_level="warning", access_log=False)


# -- keys -----------------------------------------------------------------------------------

KeyWhere = Annotated[str, typer.Argument(help="Keystore FILE, or keyring:SERVICE/NAME.")]
Kind = Annotated[str, typer.Option("--kind", help="agent or owner.")]


@key_app.command("new")
@guarded
def key_new_command(  # noqa: PLR0917 - one parameter per option
    where: KeyWhere,
    kind: Kind = "agent",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing key.")
    ] = False,
    kdf: Annotated[
        str, typer.Option("--kdf", help="Argon2id cost: moderate, interactive or min (tests).")
    ] = "moderate",
    passphrase_env: PassEnv = PASSPHRASE_ENV,
    passphrase_keyring: PassKeyring = None,
    as_json: AsJson = False,
) -> None:
    """A new key, encrypted under a passphrase (prompt, env var or keyring) or in the keyring."""
    from ._keys import key_new  # noqa: PLC0415

    code = key_new(
        where,
        kind=kind,
        overwrite=overwrite,
        kdf=kdf,
        passphrase_env=passphrase_env or None,
        passphrase_keyring=passphrase_keyring,
        as_json=as_json,
    )
    raise typer.Exit(int(code))


@key_app.command("show")
@guarded
def key_show_command(  # noqa: PLR0917 - one parameter per option
    where: KeyWhere,
    kind: Kind = "agent",
    public: Annotated[
        bool, typer.Option("--public", help="Read the did from the file without unlocking it.")
    ] = False,
    passphrase_env: PassEnv = PASSPHRASE_ENV,
    passphrase_keyring: PassKeyring = None,
    as_json: AsJson = False,
) -> None:
    """A key's did:key and where it lives (never the key)."""
    from ._keys import key_show  # noqa: PLC0415

    code = key_show(
        where,
        kind=kind,
        public=public,
        passphrase_env=passphrase_env or None,
        passphrase_keyring=passphrase_keyring,
        as_json=as_json,
    )
    raise typer.Exit(int(code))


# -- mandates -------------------------------------------------------------------------------

OwnerKeyOpt = Annotated[
    str, typer.Option("--owner-key", help="The owner's keystore FILE, or keyring:SERVICE/NAME.")
]


@mandate_app.command("issue")
@guarded
def mandate_issue_command(  # noqa: PLR0917 - one parameter per option
    owner_key: OwnerKeyOpt,
    agent: Annotated[
        str, typer.Option("--agent", help="The agent's did:key, or its keystore file.")
    ],
    policy: Annotated[Path, typer.Option("--policy", help="The policy to delegate.")],
    expires: Annotated[
        str, typer.Option("--expires", help="30d, 12h, a date or an RFC 3339 time.")
    ] = "30d",
    not_before: Annotated[str | None, typer.Option("--not-before")] = None,
    mandate_id: Annotated[str | None, typer.Option("--id", help="The mandate id.")] = None,
    output: Output = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    passphrase_env: PassEnv = PASSPHRASE_ENV,
    passphrase_keyring: PassKeyring = None,
) -> None:
    """Sign a policy into a mandate for one agent's key."""
    from ._keys import mandate_issue  # noqa: PLC0415

    code = mandate_issue(
        owner_key=owner_key,
        agent=agent,
        policy_file=policy,
        expires=expires,
        not_before=not_before,
        mandate_id=mandate_id,
        output=output,
        overwrite=overwrite,
        passphrase_env=passphrase_env or None,
        passphrase_keyring=passphrase_keyring,
    )
    raise typer.Exit(int(code))


@mandate_app.command("show")
@guarded
def mandate_show_command(
    path: Annotated[Path, typer.Argument(help="The mandate file.")], as_json: AsJson = False
) -> None:
    """What a mandate says (without verifying it)."""
    from ._keys import mandate_show  # noqa: PLC0415

    raise typer.Exit(int(mandate_show(path, as_json=as_json)))


@mandate_app.command("verify")
@guarded
def mandate_verify_command(
    path: Annotated[Path, typer.Argument(help="The mandate file.")],
    owner: Owner = None,
    agent: Annotated[
        str, typer.Option("--agent", help="The agent's did:key, or its keystore file.")
    ] = "",
    revocations: RevocationsFile = None,
    as_json: AsJson = False,
) -> None:
    """Check a mandate as the agent would before paying (exit 6 if it does not verify)."""
    from ._keys import mandate_verify  # noqa: PLC0415

    if not agent:
        fail("give the agent: --agent did:key:... (or its keystore file)")
    code = mandate_verify(
        path, owners=list(owner or ()), agent=agent, revocations=revocations, as_json=as_json
    )
    raise typer.Exit(int(code))


@mandate_app.command("revoke")
@guarded
def mandate_revoke_command(
    ids: Annotated[list[str], typer.Argument(help="Mandate ids to revoke.")],
    owner_key: OwnerKeyOpt,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The revocation list to write (kept cumulative).")
    ],
    passphrase_env: PassEnv = PASSPHRASE_ENV,
    passphrase_keyring: PassKeyring = None,
) -> None:
    """Revoke mandates: sign a new revocation list (the old one's ids plus these)."""
    from ._keys import mandate_revoke  # noqa: PLC0415

    code = mandate_revoke(
        ids,
        owner_key=owner_key,
        existing=output,
        output=output,
        passphrase_env=passphrase_env or None,
        passphrase_keyring=passphrase_keyring,
    )
    raise typer.Exit(int(code))


# -- policy ---------------------------------------------------------------------------------


@policy_app.command("check")
@guarded
def policy_check_command(
    path: Annotated[Path, typer.Argument(help="The policy file (TOML or JSON).")],
    as_json: AsJson = False,
) -> None:
    """Validate a policy, then explain its rules in plain words (exit 2 if invalid)."""
    from ._explain import explain  # noqa: PLC0415

    policy = _report_policy(path)
    assert policy is not None
    explanation = explain(policy)
    if as_json:
        print_json({"ok": True, "file": str(path), **explanation.to_dict()})
        raise typer.Exit(int(ExitCode.OK))
    console = out()
    console.print(safe(f"{path}: valid policy", None), style="bold green")
    for title, lines in explanation.sections:
        console.print(safe(title, None), style="bold")
        for line in lines:
            console.print(safe(f"  - {line}", None))
    for warning in explanation.warnings:
        console.print(safe(f"warning: {warning}", None), style="yellow")
    raise typer.Exit(int(ExitCode.OK))
