"""What does paying cost? mpp_client.Client against plain httpx, side by side.

Run it with ``.venv/bin/python benchmarks/overhead.py`` (or ``./run bench``);
``--quick`` is a short smoke run with the same code paths.

Method
------
Every number is the median of per-request samples taken with
``time.perf_counter_ns``. Clients that are compared run in alternating blocks
(A B, then B A, round after round) so drift, frequency scaling and other load
on the machine hit both sides alike. One warm-up block per client is
discarded first (connection set-up, caches). The garbage collector stays on,
because allocations are part of the cost, but the median ignores the odd
collection pause.

1. Unpaid requests: ``GET /free`` with ``httpx.Client`` against
   ``mpp_client.Client`` (``DevWallet``, ``SimplePolicy``), measured twice:

   * over a real loopback socket to the embedded ``PaidServer`` (uvicorn in a
     background thread of this process, so client and server share the GIL:
     this is a latency figure for the whole round trip). This is the case
     held to the target: mpp overhead within 5 % of plain httpx;
   * through a transport that returns a canned 200 at once: no network, no
     server, so the pure client-side cost of each library shows.

2. Paid requests: the full 402 flow (parse challenge, quote, decide, reserve,
   sign the voucher, build the credential, retry, parse the receipt, commit)
   through a transport that calls ``PaidServer.handle`` in-process. The time
   spent inside ``handle`` is measured per request and subtracted:
   client-side = total - server. The transport's own glue (a header dict, an
   ``httpx.Response``) is small and counted as client-side. Target: client
   side under 1 ms. Rows:

   * no budget, a fresh ``MemoryLedger`` per block: with no budget the policy
     hands the ledger no limits, so the ledger never scans its records;
   * a budget and a ledger pre-filled by N paid requests: ``MemoryLedger``
     is a placeholder that re-adds every record on each ``reserve``, so this
     row shows its O(N) scaling, not the flow's cost;
   * the httpx floor: two plain-httpx GETs through the same transport, which
     is what any client spends on a challenge-then-retry exchange. Client
     side minus this floor is what mpp itself adds per payment;
   * for context, a paid request over the loopback socket next to an unpaid
     one from the same client.

Reading the results
-------------------
``ratio`` is median(mpp) / median(httpx); ``overhead`` is the same as a
percentage. ``rounds p25-p75`` is the spread of the per-round ratios: when it
straddles 1.00 the difference is within the machine's noise. PASS/MISS only
reports against the targets; the script never fails because of them.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

import mpp_client
from mpp_client.testing import LocalServer, PaidServer

PRICES = {"/paid": "0.25 USD"}
BASE = "http://127.0.0.1"
MAX_PER_CALL = "1.00 USD"
HUGE_BUDGET = "1000000.00 USD"
UNPAID_OVERHEAD_TARGET = 0.05
PAID_CLIENT_TARGET_NS = 1_000_000
FREE_BODY = b'{"free":true}'

#: Times one request: (total ns, ns of it spent inside the server's handler).
Sampler = Callable[[], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Settings:
    """Sample sizes: ``rounds`` alternating blocks of ``block`` requests per client."""

    socket_rounds: int
    socket_block: int
    canned_rounds: int
    canned_block: int
    paid_rounds: int
    paid_block: int
    prefill: int
    prefilled_samples: int
    socket_paid_rounds: int
    socket_paid_block: int


FULL = Settings(
    socket_rounds=20,
    socket_block=200,
    canned_rounds=20,
    canned_block=500,
    paid_rounds=20,
    paid_block=50,
    prefill=1000,
    prefilled_samples=100,
    socket_paid_rounds=10,
    socket_paid_block=20,
)
QUICK = Settings(
    socket_rounds=6,
    socket_block=50,
    canned_rounds=6,
    canned_block=200,
    paid_rounds=6,
    paid_block=20,
    prefill=200,
    prefilled_samples=30,
    socket_paid_rounds=4,
    socket_paid_block=10,
)


# -- transports ----------------------------------------------------------------


class CannedTransport(httpx.BaseTransport):
    """Answers every request with the same small 200, without any I/O."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=FREE_BODY, request=request)


class InProcessTransport(httpx.BaseTransport):
    """Hands each request to ``PaidServer.handle`` and times the server's share."""

    def __init__(self, server: PaidServer) -> None:
        self.server = server
        #: Nanoseconds spent inside ``server.handle``, accumulated.
        self.server_ns = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        headers = dict(request.headers.items())  # lowercase names, repeats joined
        start = time.perf_counter_ns()
        outcome = self.server.handle(request.method, request.url.path, headers, body)
        self.server_ns += time.perf_counter_ns() - start
        return httpx.Response(
            outcome.status, headers=outcome.headers, content=outcome.body, request=request
        )


# -- clients and samplers ----------------------------------------------------------


def paying_client(
    *, budget: str | None = None, ledger: mpp_client.Ledger | None = None, **kwargs: object
) -> mpp_client.Client:
    """The client under test, configured as in the brief."""
    return mpp_client.Client(
        methods=[mpp_client.DevWallet()],
        policy=mpp_client.SimplePolicy(max_per_call=MAX_PER_CALL, budget=budget),
        ledger=ledger,
        allow_insecure_localhost=True,
        **kwargs,  # type: ignore[arg-type]
    )


def unpaid_sampler(client: httpx.Client, url: str) -> Sampler:
    """Times one GET that must come back 200 without a payment."""

    def sample() -> tuple[int, int]:
        start = time.perf_counter_ns()
        response = client.get(url)
        elapsed = time.perf_counter_ns() - start
        if response.status_code != 200 or mpp_client.payment_record(response) is not None:
            raise RuntimeError(f"expected a free 200 from {url}, got {response.status_code}")
        return elapsed, 0

    return sample


def paid_sampler(
    client: httpx.Client, url: str, transport: InProcessTransport | None = None
) -> Sampler:
    """Times one GET that must be paid for; reports the server's share when known."""

    def sample() -> tuple[int, int]:
        server_before = transport.server_ns if transport is not None else 0
        start = time.perf_counter_ns()
        response = client.get(url)
        elapsed = time.perf_counter_ns() - start
        server = transport.server_ns - server_before if transport is not None else 0
        record = mpp_client.payment_record(response)
        if response.status_code != 200 or record is None or record.status != "committed":
            raise RuntimeError(f"expected a paid 200 from {url}, got {response.status_code}")
        return elapsed, server

    return sample


def floor_sampler(client: httpx.Client, transport: InProcessTransport) -> Sampler:
    """Two plain GETs through the paid path's transport: a 402 exchange's httpx cost."""
    first = unpaid_sampler(client, f"{BASE}/free")

    def sample() -> tuple[int, int]:
        server_before = transport.server_ns
        total = first()[0] + first()[0]
        return total, transport.server_ns - server_before

    return sample


