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
The ``httpx`` and ``mpp`` columns are medians over all of a client's samples.
``ratio`` pairs the clients round by round: each round gives mpp/httpx from
the two block medians, and ``ratio`` is the median of those (``overhead`` is
the same as a percentage). Pairing cancels slow drift that pooled medians
would keep, so ``ratio`` can differ slightly from the quotient of the two
columns. ``rounds p25-p75`` is the spread of the per-round ratios: when it
straddles 1.00 the difference is within the machine's noise. PASS/MISS only
reports against the targets; the script never fails because of them.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
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
    socket_rounds=60,
    socket_block=150,
    canned_rounds=60,
    canned_block=250,
    paid_rounds=40,
    paid_block=40,
    prefill=1000,
    prefilled_samples=100,
    socket_paid_rounds=10,
    socket_paid_block=20,
)
QUICK = Settings(
    socket_rounds=12,
    socket_block=50,
    canned_rounds=20,
    canned_block=100,
    paid_rounds=10,
    paid_block=20,
    prefill=200,
    prefilled_samples=30,
    socket_paid_rounds=4,
    socket_paid_block=10,
)


# -- transports ------------------------------------------------------------------------


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


# -- clients and samplers --------------------------------------------------------------


def paying_client(
    *,
    budget: str | None = None,
    ledger: mpp_client.Ledger | None = None,
    transport: httpx.BaseTransport | None = None,
) -> mpp_client.Client:
    """The client under test: a dev wallet, a per-call cap, loopback HTTP allowed."""
    return mpp_client.Client(
        methods=[mpp_client.DevWallet()],
        policy=mpp_client.SimplePolicy(max_per_call=MAX_PER_CALL, budget=budget),
        # Never the default ledger: a benchmark must not spend from the user's budget file.
        ledger=ledger if ledger is not None else mpp_client.MemoryLedger(),
        allow_insecure_localhost=True,
        transport=transport,
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
    get_free = unpaid_sampler(client, f"{BASE}/free")

    def sample() -> tuple[int, int]:
        server_before = transport.server_ns
        total = get_free()[0] + get_free()[0]
        return total, transport.server_ns - server_before

    return sample


# -- measuring -------------------------------------------------------------------------

#: Called at the start of every block; returns the sampler for that block.
BlockFactory = Callable[[], Sampler]


def same(sampler: Sampler) -> BlockFactory:
    """A factory that reuses one sampler (and its client) for every block."""
    return lambda: sampler


@dataclass(slots=True)
class Series:
    """Per-request samples of one client in one scenario."""

    totals: list[int] = field(default_factory=list)
    servers: list[int] = field(default_factory=list)
    #: Median client-side time of each block, to compare clients round by round.
    block_medians: list[float] = field(default_factory=list)

    def add_block(self, samples: list[tuple[int, int]]) -> None:
        self.totals.extend(total for total, _ in samples)
        self.servers.extend(server for _, server in samples)
        self.block_medians.append(statistics.median(total - server for total, server in samples))

    @property
    def total(self) -> float:
        return statistics.median(self.totals)

    @property
    def server(self) -> float:
        return statistics.median(self.servers)

    @property
    def client(self) -> float:
        """Median of (total - server) per request: the client-side cost."""
        return statistics.median(t - s for t, s in zip(self.totals, self.servers, strict=True))


def run_block(sample: Sampler, size: int) -> list[tuple[int, int]]:
    gc.collect()
    return [sample() for _ in range(size)]


def interleave(factories: Mapping[str, BlockFactory], rounds: int, block: int) -> dict[str, Series]:
    """Alternating blocks, the order flipped each round, after one warm-up block each."""
    names = list(factories)
    for name in names:
        run_block(factories[name](), max(1, block // 4))
    results = {name: Series() for name in names}
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            results[name].add_block(run_block(factories[name](), block))
    return results


def measure(sampler: Sampler, size: int) -> Series:
    """One block without a partner (for rows that have nothing to alternate with)."""
    series = Series()
    series.add_block(run_block(sampler, size))
    return series


# -- scenarios -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """An httpx-vs-mpp result for unpaid requests."""

    label: str
    httpx: Series
    mpp: Series
    target: float | None

    @property
    def round_ratios(self) -> list[float]:
        """mpp/httpx per round, from the two block medians of that round."""
        return [
            m / h for m, h in zip(self.mpp.block_medians, self.httpx.block_medians, strict=True)
        ]

    @property
    def ratio(self) -> float:
        """The median per-round ratio: paired, so drift between rounds cancels out."""
        return statistics.median(self.round_ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """The 25th and 75th percentiles of the per-round ratios."""
        ratios = self.round_ratios
        if len(ratios) < 2:
            return ratios[0], ratios[0]
        quartiles = statistics.quantiles(ratios, n=4)
        return quartiles[0], quartiles[2]


@dataclass(frozen=True, slots=True)
class PaidRow:
    """One paid-request measurement; ``target_ns`` applies to its client-side median."""

    label: str
    series: Series
    target_ns: int | None = None


def compare_unpaid(
    label: str,
    url: str,
    rounds: int,
    block: int,
    target: float | None,
    transport: Callable[[], httpx.BaseTransport] | None = None,
) -> Comparison:
    """httpx.Client against mpp_client.Client, GET ``url``, in alternating blocks."""
    with (
        httpx.Client(transport=transport() if transport else None) as plain,
        paying_client(transport=transport() if transport else None) as mpp,
    ):
        series = interleave(
            {
                "httpx": same(unpaid_sampler(plain, url)),
                "mpp": same(unpaid_sampler(mpp, url)),
            },
            rounds,
            block,
        )
    return Comparison(label, series["httpx"], series["mpp"], target)


def compare_paid_in_process(settings: Settings) -> tuple[PaidRow, PaidRow]:
    """Paid flow (new client and ledger each block) against the two-GET httpx floor."""
    transport = InProcessTransport(PaidServer(PRICES))
    with ExitStack() as clients:

        def fresh_paid() -> Sampler:
            ledger = mpp_client.MemoryLedger()
            client = clients.enter_context(paying_client(transport=transport, ledger=ledger))
            return paid_sampler(client, f"{BASE}/paid", transport)

        plain = clients.enter_context(httpx.Client(transport=transport))
        series = interleave(
            {"paid": fresh_paid, "floor": same(floor_sampler(plain, transport))},
            settings.paid_rounds,
            settings.paid_block,
        )
    return (
        PaidRow("paid, no budget, fresh ledger", series["paid"], PAID_CLIENT_TARGET_NS),
        PaidRow("httpx floor: 2 plain GETs, same transport", series["floor"]),
    )


def measure_prefilled_ledger(settings: Settings) -> PaidRow:
    """Paid requests under a budget once the placeholder ledger holds ``prefill`` records."""
    transport = InProcessTransport(PaidServer(PRICES))
    with paying_client(budget=HUGE_BUDGET, transport=transport) as client:
        sample = paid_sampler(client, f"{BASE}/paid", transport)
        for _ in range(settings.prefill):
            sample()
        series = measure(sample, settings.prefilled_samples)
    high = settings.prefill + settings.prefilled_samples
    label = f"paid, budget, ledger n={settings.prefill}..{high} [placeholder O(n)]"
    return PaidRow(label, series)


def compare_paid_socket(server_url: str, settings: Settings) -> tuple[PaidRow, PaidRow]:
    """For context: one mpp client, paid and unpaid GETs over the loopback socket."""
    with paying_client() as client:
        series = interleave(
            {
                "paid": same(paid_sampler(client, f"{server_url}/paid")),
                "free": same(unpaid_sampler(client, f"{server_url}/free")),
            },
            settings.socket_paid_rounds,
            settings.socket_paid_block,
        )
    return (
        PaidRow("paid GET, loopback socket (server incl.)", series["paid"]),
        PaidRow("unpaid GET, same client and socket", series["free"]),
    )


# -- report ----------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000:.1f} us"


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def unpaid_table(comparisons: list[Comparison]) -> list[str]:
    header = (
        f"{'unpaid requests (median per request)':<40} {'httpx':>10} {'mpp':>10} "
        f"{'ratio':>6} {'overhead':>9} {'rounds p25-p75':>15}  target"
    )
    lines = [header, "-" * len(header)]
    for c in comparisons:
        low, high = c.spread
        if c.target is None:
            target = "(info)"
        else:
            target = f"<= {c.target:.0%} {verdict(c.ratio - 1 <= c.target)}"
        lines.append(
            f"{c.label:<40} {fmt_ns(c.httpx.client):>10} {fmt_ns(c.mpp.client):>10} "
            f"{c.ratio:>6.3f} {c.ratio - 1:>+9.1%} {f'{low:.3f}-{high:.3f}':>15}  {target}"
        )
    return lines


def paid_table(rows: list[PaidRow], attributable: float) -> list[str]:
    header = (
        f"{'paid requests (median per request)':<52} {'total':>10} {'server':>10} "
        f"{'client':>10}  target"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        s = row.series
        server = fmt_ns(s.server) if any(s.servers) else "-"
        target = "(info)"
        if row.target_ns is not None:
            target = f"< {fmt_ns(row.target_ns)} {verdict(s.client < row.target_ns)}"
        lines.append(
            f"{row.label:<52} {fmt_ns(s.total):>10} {server:>10} {fmt_ns(s.client):>10}  {target}"
        )
    label = "mpp's own share per payment (client - floor)"
    lines.append(f"{label:<52} {'':>10} {'':>10} {fmt_ns(attributable):>10}  (info)")
    return lines


def run(settings: Settings) -> list[str]:
    """Every scenario, in one process; returns the report lines."""
    with LocalServer(PaidServer(PRICES)) as server:
        socket = compare_unpaid(
            "unpaid GET, loopback socket",
            f"{server.url}/free",
            settings.socket_rounds,
            settings.socket_block,
            UNPAID_OVERHEAD_TARGET,
        )
        socket_paid, socket_free = compare_paid_socket(server.url, settings)
    canned = compare_unpaid(
        "unpaid GET, canned transport (no I/O)",
        f"{BASE}/free",
        settings.canned_rounds,
        settings.canned_block,
        None,
        CannedTransport,
    )
    paid, floor = compare_paid_in_process(settings)
    prefilled = measure_prefilled_ledger(settings)
    attributable = paid.series.client - floor.series.client
    return [
        *unpaid_table([socket, canned]),
        "",
        *paid_table([paid, floor, prefilled, socket_paid, socket_free], attributable),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (a few seconds)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    lines = run(settings)
    elapsed = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    print(f"mpp_client {mpp_client.__version__}, httpx {httpx.__version__}; {mode} run")
    print()
    print("\n".join(lines))
    print()
    print(f"({elapsed:.1f} s; medians of per-request samples; see the docstring for method)")


if __name__ == "__main__":
    main()
