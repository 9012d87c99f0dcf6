"""The main job: an agent making paid calls under a budget its owner signed.

1. The owner writes a policy (``examples/policy.toml``) and signs it into a
   mandate for the agent's key.
2. The agent verifies the mandate (owner's signature, its own did, validity)
   and loads the policy from it.
3. Against the embedded paid server on a loopback port, the agent pays for
   several calls with the dev wallet (Ed25519-signed vouchers the server
   verifies), printing each payment and its receipt, the refusals with their
   reasons, and what remains of the budget.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mpp_client
from mpp_client import AgentKey, Mandate, OwnerKey, Policy
from mpp_client.ledger import SqliteLedger, verify_exported_proof
from mpp_client.testing import LocalServer, PaidServer

HERE = Path(__file__).resolve().parent


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
    server = PaidServer(
        {
            "/weather": "0.25 USD",
            "/forecast": "0.42 USD",
            "/report": "0.48 USD",
            "/premium-report": "2.00 USD",
        }
    )
    with (
        LocalServer(server) as local,
        mpp_client.Client(
            base_url=local.url,
            methods=[mpp_client.DevWallet()],
            policy=policy,
            ledger=ledger,
            approver=approve,
            agent_key=agent,
            # Plain HTTP is refused for credentials; loopback only on request.
            allow_insecure_localhost=True,
        ) as client,
    ):
        print(f"\npaid server on {local.url}\n")
        calls = ["/weather", "/forecast", "/report", "/premium-report", "/weather", "/weather"]
        for path in calls:
            try:
                response = client.get(path, extensions={"mpp": {"purpose": "demo"}})
            except mpp_client.PolicyDenied as refusal:
                print(f"REFUSED  GET {path}: {refusal}")
                continue
            record = mpp_client.payment_record(response)
            assert record is not None
            receipt = record.receipt
            print(
                f"PAID     GET {path}: {record.amount} to {record.payee} via {record.method} "
                f"-> HTTP {response.status_code}, receipt {receipt.reference if receipt else '-'}"
            )
        spent = ledger.spent("USD")
        total = next(b for b in policy.budgets if b.name == "total").limit
        print(f"\nspent {spent} of {total}; {total - spent} remains")
        print(f"the server received {server.total_received} in {len(server.payments)} payments")
        print(ledger.verify(trusted_agents=[agent.did], require_signatures=True))
        first = ledger.records()[0]
        proof = ledger.inclusion_proof(first.id)
        ok = verify_exported_proof(proof, trusted_agents=[agent.did])
        print(f"inclusion proof for payment {first.id}: {'valid' if ok else 'INVALID'}")


if __name__ == "__main__":
    main()
