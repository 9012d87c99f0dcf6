"""The main job: an agent making paid calls under a budget.

Starts the embedded paid server on a loopback port, then pays for several
calls with the dev wallet (Ed25519-signed vouchers the server verifies) under
a spending policy: at most 0.50 USD a call and 1.00 USD in all. It prints each
payment with its receipt, what remains of the budget, and the refusals, with
their reasons, once the budget would be exceeded.
"""

from __future__ import annotations

import mpp_client
from mpp_client.testing import LocalServer, PaidServer


def main() -> None:
    server = PaidServer(
        {"/weather": "0.25 USD", "/forecast": "0.40 USD", "/premium-report": "2.00 USD"}
    )
    policy = mpp_client.SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD")
    with (
        LocalServer(server) as local,
        mpp_client.Client(
            base_url=local.url,
            methods=[mpp_client.DevWallet()],
            policy=policy,
            # Plain HTTP is refused for credentials; loopback is allowed only on request.
            allow_insecure_localhost=True,
        ) as client,
    ):
        ledger = client.ledger
        assert ledger is not None
        print(f"paid server on {local.url}; policy: {policy}\n")
        for path in ["/weather", "/forecast", "/weather", "/premium-report", "/forecast"]:
            try:
                response = client.get(path)
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
        assert policy.budget is not None
        print(f"\nspent {spent} of {policy.budget}; {policy.budget - spent} remains")
        print(f"the server received {server.total_received} in {len(server.payments)} payments")


if __name__ == "__main__":
    main()
