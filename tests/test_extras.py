"""The core installs light: optional extras are imported lazily, and a missing
one fails with the pip command to run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import run_without

#: Every optional package: the core must import and work without any of them.
EXTRAS = {
    "uvicorn", "starlette", "web3", "eth_account", "pytempo", "stripe", "psycopg",
    "mpp", "rfc8785", "keyring", "keyrings", "pkcs11",
}  # fmt: skip


def run(code: str) -> subprocess.CompletedProcess[str]:
    return run_without(EXTRAS, code)


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [
        ("mpp_client.methods.evm", "eth_account", "evm"),
        ("mpp_client.methods.tempo", "pytempo", "tempo"),
        ("mpp_client.methods.stripe", "stripe", "stripe"),
    ],
)
def test_each_wallet_extra_missing_alone_names_its_install(
    module: str, package: str, extra: str
) -> None:
    result = run_without(
        {package},
        f"""
        import mpp_client
        try:
            import {module}
        except ImportError as exc:
            print("error:", exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert f'pip install "mpp-client[{extra}]"' in result.stdout


def test_core_imports_without_any_extra() -> None:
    result = run(
        """
        import mpp_client, mpp_client.protocol, mpp_client.testing
        from mpp_client.testing import PaidServer
        PaidServer({"/paid": "0.25 USD"})
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("loaded:", loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_missing_extra_names_the_pip_install() -> None:
    result = run(
        """
        import mpp_client
        from mpp_client.testing import LocalServer, PaidServer
        try:
            LocalServer(PaidServer())
        except mpp_client.PaymentError as exc:
            print("error:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'error: LocalServer needs uvicorn: pip install "mpp-client[testing]"' in result.stdout


def test_wallet_extras_are_lazy_and_name_their_install() -> None:
    result = run(
        """
        import mpp_client.methods as methods
        for name, key in [("EvmWallet", "0x" + "11" * 32), ("TempoWallet", "0x" + "11" * 32),
                          ("StripeWallet", "sk_test_x")]:
            try:
                wallet = getattr(methods, name)
                wallet(key) if name != "StripeWallet" else wallet(key, payment_method="pm_1")
            except Exception as exc:
                print(name, "->", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "EvmWallet -> " in result.stdout and "mpp-client[evm]" in result.stdout
    assert "mpp-client[tempo]" in result.stdout
    assert "mpp-client[stripe]" in result.stdout


def test_paying_with_a_simple_policy_never_loads_pydantic_or_pynacl_at_import() -> None:
    """``import mpp_client`` stays light: the policy model and the keys load on first use."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mpp_client\n"
            "print(sorted(m for m in ('pydantic', 'nacl') if m in sys.modules))\n"
            "mpp_client.Policy\n"
            "print('pydantic' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[-1] == "True"  # asking for Policy loads it
    assert "pydantic" not in result.stdout.splitlines()[0]


#: What ``import mpp_client`` leaves for first use: stores, x402, MCP, quoting, crypto, asyncio.
DEFERRED = (
    "asyncio",
    "httpcore",
    "mpp_client._flow._mcp",
    "mpp_client._flow._quote",
    "mpp_client.ledger._core",
    "mpp_client.ledger._memory",
    "mpp_client.ledger._postgres",
    "mpp_client.ledger._sqlite",
    "mpp_client.ledger._verify",
    "mpp_client.methods.dev",
    "mpp_client.protocol._discovery",
    "mpp_client.protocol._mcp",
    "mpp_client.protocol._x402",
    "nacl",
    "psycopg",
    "pydantic",
    "sqlite3",
    "tenacity",
)


def test_import_loads_only_the_interface_and_each_lazy_name_resolves() -> None:
    """The deferred modules load on first use, and every exported name still resolves."""
    result = run(
        f"""
        import importlib, sys
        import mpp_client
        print(sorted(m for m in {DEFERRED!r} if m in sys.modules))
        missing = []
        for package in ("mpp_client", "mpp_client.protocol", "mpp_client.ledger",
                        "mpp_client.methods", "mpp_client.policy", "mpp_client._flow"):
            module = importlib.import_module(package)
            for name in module.__all__:
                try:
                    getattr(module, name)
                except ImportError as exc:  # an extra not installed: it names its install
                    assert "pip install" in str(exc), (package, name, exc)
                except AttributeError:
                    missing.append(f"{{package}}.{{name}}")
        print(missing)
        print(mpp_client.MemoryLedger is mpp_client.ledger.MemoryLedger)
        """
    )
    first, second, third = result.stdout.splitlines()[-3:]
    assert first == "[]", f"loaded by import mpp_client: {first}"
    assert second == "[]", f"exported but not found: {second}"
    assert third == "True"


def test_the_protocol_defers_exactly_what_each_of_its_modules_exports() -> None:
    """Its table of deferred names is written by hand: it must not drift from the modules."""
    import importlib

    import mpp_client.protocol as protocol

    for module, names in protocol._LAZY_MODULES.items():
        exported = importlib.import_module(f"mpp_client.protocol.{module}").__all__
        assert sorted(names) == sorted(exported), module
    assert set(protocol._LAZY) <= set(protocol.__all__)


def test_a_name_no_package_exports_is_an_attribute_error() -> None:
    result = run(
        """
        import mpp_client, mpp_client.ledger
        for module in (mpp_client, mpp_client.ledger):
            try:
                module.NoSuchThing
            except AttributeError as exc:
                print(exc)
        """
    )
    assert "module 'mpp_client' has no attribute 'NoSuchThing'" in result.stdout
    assert "module 'mpp_client.ledger' has no attribute 'NoSuchThing'" in result.stdout


def test_key_store_extras_are_lazy_and_name_their_install() -> None:
    result = run(
        """
        from mpp_client.identity import AgentKey, LocalSecp256k1Signer, Pkcs11Token
        key = AgentKey.generate()
        for name, call in [
            ("pkcs11", lambda: Pkcs11Token("libsofthsm2.so", token_label="t", pin="1234")),
            ("keyring-save", lambda: key.save_to_keyring("svc", "agent")),
            ("keyring-load", lambda: AgentKey.from_keyring("svc", "agent")),
            ("secp256k1", lambda: LocalSecp256k1Signer("0x" + "11" * 32)),
        ]:
            try:
                call()
            except Exception as exc:
                print(name, type(exc).__name__, "->", exc)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("loaded:", loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    needs_keyring = 'the OS keyring needs the keyring package: pip install "mpp-client[keyring]"'
    assert f"keyring-save SignerError -> {needs_keyring}" in out
    assert "keyring-load SignerError -> the OS keyring needs" in out
    needs_pkcs11 = 'PKCS#11 tokens need python-pkcs11: pip install "mpp-client[pkcs11]"'
    assert f"pkcs11 SignerError -> {needs_pkcs11}" in out
    assert (
        'secp256k1 SignerError -> secp256k1 signers need eth-account: pip install "mpp-client[evm]"'
        in out
    )
    assert "loaded: []" in out


def test_telemetry_without_the_otel_extra_names_the_install() -> None:
    result = run(
        """
        import sys
        sys.meta_path[0].__class__.find_spec  # the blocker is installed
        BLOCKED.add("opentelemetry")
        import mpp_client
        try:
            mpp_client.Client(methods=[mpp_client.DevWallet()], ledger="memory:", telemetry=True)
        except ImportError as exc:
            print("error:", exc)
        print("loaded:", "opentelemetry" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "mpp-client[otel]"' in result.stdout
    assert "loaded: False" in result.stdout


INTEGRATION_EXTRAS = (
    '"mcp", "mcp_types", "httpx2", "langchain_core", "autogen_core", "autogen_agentchat", '
    '"autogen_ext", "agents", "openai", "pydantic_ai"'
)


def test_core_imports_without_the_integration_extras() -> None:
    result = run(
        f"""
        BLOCKED.update({{{INTEGRATION_EXTRAS}}})
        import mpp_client, mpp_client.integrations, mpp_client.testing.mcp
        from mpp_client.integrations import ToolReport
        from mpp_client.testing.mcp import McpTool, PaidMcpServer
        PaidMcpServer({{"forecast": McpTool("0.25 USD")}})
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("loaded:", loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_a_missing_integration_extra_names_the_pip_install() -> None:
    result = run(
        f"""
        BLOCKED.update({{{INTEGRATION_EXTRAS}}})
        import importlib
        import mpp_client
        from mpp_client.testing.mcp import PaidMcpServer
        for name in ["mcp", "langchain", "autogen", "openai_agents", "pydantic_ai"]:
            try:
                importlib.import_module("mpp_client.integrations." + name)
            except mpp_client.PaymentError as exc:
                print(name, "->", exc)
        try:
            PaidMcpServer().server
        except mpp_client.PaymentError as exc:
            print("server ->", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'mcp -> mpp_client.integrations.mcp needs mcp: pip install "mpp-client[mcp]"' in out
    assert "langchain -> mpp_client.integrations.langchain needs langchain_core" in out
    assert 'pip install "mpp-client[langchain]"' in out
    assert 'pip install "mpp-client[autogen]"' in out
    assert "openai_agents -> mpp_client.integrations.openai_agents needs agents" in out
    assert 'pip install "mpp-client[openai-agents]"' in out
    assert 'pip install "mpp-client[pydantic-ai]"' in out
    assert 'server -> the paid MCP server needs the mcp SDK: pip install "mpp-client[mcp]"' in out
