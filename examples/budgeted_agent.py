"""The main job: an agent making paid calls under a budget its owner signed.

1. The owner writes a policy (``examples/policy.toml``) and signs it into a
   mandate for the agent's key.
2. The agent verifies the mandate (owner's signature, its own did, validity)
   and loads the policy from it.
3. Against the embedded paid server on a loopback port, the agent pays for
   several calls with the dev wallet (Ed25519-signed vouchers the server
   verifies), printing each payment and its receipt, the refusals with their
   reasons, and what remains of the budget.
4. The same server also sells one path over x402 (``/x402/weather``, USDC on
   Base Sepolia), which the agent pays with an EIP-3009 authorization signed
   by a fresh EVM key (:class:`~mpp_client.methods.X402Wallet`), under the
   same policy, budget and ledger. The demo runs without a chain: that
   endpoint verifies the authorization's signature and does not settle it,
   so no token moves and its settlement names no transaction. The test
   suite settles x402 payments on a local chain (``tests/test_x402_interop.py``).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eth_account import Account

import mpp_client
from mpp_client import AgentKey, Mandate, OwnerKey, Policy
from mpp_client.ledger import SqliteLedger, verify_exported_proof
from mpp_client.methods import EvmWallet, X402Wallet
from mpp_client.testing import LocalServer, PaidServer
from mpp_client.testing.x402 import X402Server

HERE = Path(__file__).resolve().parent
#: The x402 seller: USDC on Base Sepolia (the built-in asset registry knows it).
X402_PAYEE = "0x742d35Cc6634c0532925a3b844bC9e7595F8fE00"
BASE_SEPOLIA = 84532
BASE_SEPOLIA_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


def shown(amount: mpp_client.Amount) -> str:
    """An amount with the policy currency's two decimals when that is exact (USDC has six)."""
    try:
        return str(amount.rescale(2))
    except mpp_client.MoneyError:
        return str(amount)


def delegate() -> tuple[Policy, AgentKey]:
    owner = OwnerKey.generate()
    agent = AgentKey.generate()
    document = Policy.from_file(HERE / "policy.toml")
    mandate = Mandate.issue(
        owner, agent.did, document.to_dict(), expires_at=datetime.now(UTC) + timedelta(hours=8)
    )
    print(f"owner {owner.did}\n  signed mandate {mandate.id} for agent {agent.did}")
    # The agent's side: only a mandate that verifies is ever run.
    policy = Policy.from_mandate(
        Mandate.from_json(mandate.to_json()), owner_keys=[owner.did], agent=agent
    )
    return policy, agent


def approve(request: mpp_client.ApprovalRequest) -> bool:
    # A real approver would page a human; this one approves up to 0.45 USD.
    answer = request.charge is not None and request.charge <= mpp_client.Amount.parse("0.45 USD")
    print(f"  approval asked for {request.charge} ({'; '.join(request.reasons)}): {answer}")
    return answer


def main() -> None:
    policy, agent = delegate()
    # A fresh ledger file for the demo (the default lives in the user's data
    # directory and keeps budgets across runs). The agent signs every event.
    workdir = tempfile.mkdtemp(prefix="mpp-demo-")
    ledger = SqliteLedger(Path(workdir) / "ledger.sqlite3", agent_key=agent)
    mpp_server = PaidServer(
        {
            "/weather": "0.25 USD",
            "/forecast": "0.42 USD",
            "/report": "0.48 USD",
            "/premium-report": "2.00 USD",
        }
    )
    # One server, two protocols: /x402/weather is sold over x402, the rest over MPP.
    # Verify-only (no settle=): the demo has no chain, so no token moves.
    server = X402Server(
        {"/x402/weather": "0.05 USD"},
        pay_to=X402_PAYEE,
        asset=BASE_SEPOLIA_USDC,
        chain_id=BASE_SEPOLIA,
        token_name="USDC",
        token_version="2",
        mpp=mpp_server,
    )
    x402 = X402Wallet(EvmWallet(Account.create().key, chain_ids=[BASE_SEPOLIA]))
    with (
        LocalServer(server) as local,
        mpp_client.Client(
            base_url=local.url,
            methods=[mpp_client.DevWallet(), x402],
            policy=policy,
            ledger=ledger,
            approver=approve,
            agent_key=agent,
            # Plain HTTP is refused for credentials; loopback only on request.
            allow_insecure_localhost=True,
        ) as client,
    ):
        print(f"\npaid server on {local.url}\n")
        calls = [
            "/weather",
            "/forecast",
            "/report",
            "/premium-report",
            "/weather",
            "/weather",
            "/x402/weather",
        ]
        for path in calls:
            try:
                response = client.get(path, extensions={"mpp": {"purpose": "demo"}})
            except mpp_client.PolicyDenied as refusal:
                print(f"REFUSED  GET {path}: {refusal}")
                continue
            record = mpp_client.payment_record(response)
            assert record is not None
            receipt = record.receipt
            if record.method == "x402":
                how = "signature verified, not settled (no chain in the demo)"
            else:
                how = f"receipt {receipt.reference if receipt else '-'}"
            print(
                f"PAID     GET {path}: {shown(record.charge)} to {record.payee} via "
                f"{record.method} -> HTTP {response.status_code}, {how}"
            )
        spent = ledger.spent("USD")
        total = next(b for b in policy.budgets if b.name == "total").limit
        print(f"\nspent {shown(spent)} of {total}; {shown(total - spent)} remains")
        print(
            f"the server received {mpp_server.total_received} in {len(mpp_server.payments)} "
            f"MPP payments and {len(server.payments)} x402 payment"
        )
        print(ledger.verify(trusted_agents=[agent.did], require_signatures=True))
        first = ledger.records()[0]
        proof = ledger.inclusion_proof(first.id)
        ok = verify_exported_proof(proof, trusted_agents=[agent.did])
        print(f"inclusion proof for payment {first.id}: {'valid' if ok else 'INVALID'}")


if __name__ == "__main__":
    main()
