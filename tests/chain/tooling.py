"""Chain-test tooling: the anvil binary, the compiled contracts, a deployed world.

``anvil_binary()`` runs ``scripts/chain-tools.sh`` (idempotent: it installs
the pinned npm packages into ``node_modules`` when they are missing) and
returns the binary path it prints. ``compile_contracts()`` compiles
``contracts/*.sol`` with the pinned solc-js and caches the artifact under
``node_modules/.cache/mpp-client-chain/``, keyed by the sources, the compile
script and the lock file, so only the first run pays for the compiler.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mpp_client.methods.evm import PERMIT2_ADDRESS
from mpp_client.testing.evm import Anvil, ChainClient, selector

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = sorted((ROOT / "contracts").glob("*.sol"))
COMPILE_JS = Path(__file__).with_name("compile.js")
CACHE = ROOT / "node_modules" / ".cache" / "mpp-client-chain"

TOKEN_NAME = "Test USD"
TOKEN_SYMBOL = "TUSD"
TOKEN_VERSION = "1"
TOKEN_DECIMALS = 6
ETH = 10**18


def anvil_binary() -> str:
    """The anvil executable, installing the chain tools first if needed."""
    override = os.environ.get("MPP_ANVIL")
    if override:
        return override
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed for the chain tests (it installs anvil and solc)")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "chain-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/chain-tools.sh failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def compile_contracts() -> dict[str, Any]:
    """``{name: {"abi", "bytecode", "deployedBytecode"}}`` for every contract."""
    digest = hashlib.sha256()
    for path in [*CONTRACTS, COMPILE_JS, ROOT / "package-lock.json"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    artifact = CACHE / f"{digest.hexdigest()[:32]}.json"
    if artifact.exists():
        return dict(json.loads(artifact.read_text())["contracts"])
    result = subprocess.run(
        ["node", str(COMPILE_JS), *map(str, CONTRACTS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "NODE_PATH": str(ROOT / "node_modules")},
    )
    if result.returncode != 0:
        raise RuntimeError(f"solc failed:\n{result.stderr[-4000:]}")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = artifact.with_suffix(".tmp")
    tmp.write_text(result.stdout)
    tmp.replace(artifact)
    return dict(json.loads(result.stdout)["contracts"])


@dataclass
class World:
    """A running node with the test token deployed and Permit2's address populated."""

    anvil: Anvil
    chain: ChainClient  # sends as the token's minter
    token: str
    chain_id: int

    @property
    def url(self) -> str:
        return self.anvil.url

    def funded_account(self, tokens: int = 0, eth: int = 10 * ETH) -> LocalAccount:
        """A fresh key with ``eth`` wei of gas money and ``tokens`` base units of the token."""
        account: LocalAccount = Account.create()
        self.anvil.set_balance(account.address, eth)
        if tokens:
            self.mint(account.address, tokens)
        return account

    def mint(self, to: str, amount: int) -> None:
        data = selector("mint(address,uint256)") + abi_encode(["address", "uint256"], [to, amount])
        receipt = self.chain.transact(self.token, data)
        assert receipt["status"] == "0x1"

    def approve_permit2(self, owner: LocalAccount, amount: int = 2**256 - 1) -> None:
        client = ChainClient(self.anvil.rpc, owner)
        data = selector("approve(address,uint256)") + abi_encode(
            ["address", "uint256"], [PERMIT2_ADDRESS, amount]
        )
        assert client.transact(self.token, data)["status"] == "0x1"

    def balance(self, owner: str) -> int:
        return self.chain.balance_of(self.token, owner)

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        receipt = self.anvil.rpc.call("eth_getTransactionReceipt", tx_hash)
        assert isinstance(receipt, dict)
        return receipt


def start_world(binary: str, contracts: dict[str, Any]) -> World:
    """Start anvil, deploy TestUSD, and put WitnessTransfer's code at Permit2's address."""
    anvil = Anvil(binary).start()
    try:
        minter: LocalAccount = Account.create()
        anvil.set_balance(minter.address, 100 * ETH)
        chain = ChainClient(anvil.rpc, minter)
        constructor = abi_encode(
            ["string", "string", "string", "uint8"],
            [TOKEN_NAME, TOKEN_SYMBOL, TOKEN_VERSION, TOKEN_DECIMALS],
        )
        token = chain.deploy(contracts["TestUSD"]["bytecode"], constructor)
        anvil.set_code(PERMIT2_ADDRESS, contracts["WitnessTransfer"]["deployedBytecode"])
        return World(anvil=anvil, chain=chain, token=token, chain_id=anvil.chain_id)
    except BaseException:
        anvil.stop()
        raise
