"""Paid requests per second against one pympp server: our client against pympp's own.

Run it with ``.venv/bin/python benchmarks/throughput.py`` (or ``./run bench``);
``--quick`` is a short smoke run.

Method
------
One pympp server (pympp's ``Mpp`` engine and ``@pay`` route, a ``dev`` method
verifying Ed25519 vouchers, single use through pympp's ``MemoryStore``) runs in
its own process under uvicorn on 127.0.0.1, so its CPU is not the client's.
Three clients pay it, each in a fresh process per round (one warm-up block
discarded), at concurrency 1, 16 and 64 (asyncio tasks sharing one client):

* ``pympp``: pympp's client (``mpp.client.PaymentTransport``) with a dev
  method written to its public client contract, as tests/peers does;
* ``mpp-client, memory``: ``mpp_client.AsyncClient`` with ``DevWallet``, a
  ``SimplePolicy`` with a budget, and ``ledger="memory:"``;
* ``mpp-client, sqlite``: the same with a SQLite ledger file (WAL, full sync).

Rounds alternate the order of the three (A B C, then C B A, ...) so drift and
other load on the machine hit them alike. Each round pays ``N`` requests and
reports paid requests/s; the table gives the median over rounds and the
ratio to pympp's. Targets (issue 10): at least pympp's with SQLite, 2x with
the memory ledger. The policy and ledger do work pympp's client does not do
at all (decide, reserve, commit, sign nothing); the ratio is what an agent
pays for having them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = textwrap.dedent(
    """
    import socket, sys
    import uvicorn
    from mpp import MemoryStore
    from mpp.server import Mpp, pay
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    sys.path.insert(0, {root!r})
    from tests.test_interop_pympp import REALM, SECRET, ServerState, dev_server_method

    state = ServerState()
    engine = Mpp(methods=dev_server_method(state, MemoryStore()), realm=REALM, secret_key=SECRET)

    @pay(engine.dev.charge(amount="0.01"))
    async def paid(request, credential, receipt):
        return JSONResponse({{"ok": True}})

    # IPPROTO_TCP explicitly: asyncio turns Nagle off only on sockets that say TCP,
    # and a server left with Nagle on stalls split responses by a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    app = Starlette(routes=[Route("/paid", paid)])
    uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off")).run(sockets=[sock])
    """
)

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    sys.path.insert(0, {root!r})
    job = json.loads(sys.argv[1])

    def ours(ledger):
        import mpp_client
        return mpp_client.AsyncClient(
            methods=[mpp_client.DevWallet(bytes(32))],
            policy=mpp_client.SimplePolicy(max_per_call="0.05 USD", budget="1000000 USD"),
            ledger=ledger,
            allow_insecure_localhost=True,
            limits=__import__("httpx").Limits(max_connections=100),
        )

    def theirs():
        import httpx, importlib.util
        from mpp.client import PaymentTransport
        peer_file = {root!r} + "/tests/peers/pympp_client.py"
        spec = importlib.util.spec_from_file_location("peer", peer_file)
        peer = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(peer)
        method = peer._dev_method({{"seed": "00" * 32}})
        inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=100))
        return httpx.AsyncClient(transport=PaymentTransport(methods=[method], inner=inner))

    async def main():
        client = theirs() if job["who"] == "pympp" else ours(job["ledger"])
        url = job["url"]
        queue = iter(range(job["n"]))
        failures = 0
        async def worker():
            nonlocal failures
            for _ in queue:
                response = await client.get(url)
                if response.status_code != 200:
                    failures += 1
        async with client:
            await client.get(url)  # connect, warm caches
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(job["concurrency"])))
            elapsed = time.perf_counter() - started
        print(json.dumps({{"rps": job["n"] / elapsed, "failures": failures}}))

    asyncio.run(main())
    """
)


def _start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT))],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, f"http://127.0.0.1:{port}/paid"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the pympp server did not start")


def _round(who: str, url: str, n: int, concurrency: int, ledger: str) -> float:
    job = {"who": who, "url": url, "n": n, "concurrency": concurrency, "ledger": ledger}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CLIENT.format(root=str(ROOT)), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{who} client failed:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["failures"]:
        raise RuntimeError(f"{who}: {report['failures']} requests were not paid")
    return float(report["rps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    rounds, n = (2, 60) if args.quick else (5, 400)
    server, url = _start_server()
    tmp = Path(tempfile.mkdtemp(prefix="mpp-bench-"))
    try:
        print(f"paid requests/s against one pympp server ({n} per round, {rounds} rounds)")
        print(
            f"{'concurrency':>11} {'pympp':>10} {'ours, memory':>14} {'ours, sqlite':>14}  ratios"
        )
        for concurrency in (1, 16, 64):
            results: dict[str, list[float]] = {"pympp": [], "memory": [], "sqlite": []}
            order = ["pympp", "memory", "sqlite"]
            for index in range(rounds + 1):
                for who in order if index % 2 == 0 else reversed(order):
                    ledger = "memory:" if who != "sqlite" else str(tmp / f"l{index}.sqlite3")
                    rps = _round("pympp" if who == "pympp" else "ours", url, n, concurrency, ledger)
                    if index > 0:  # the first block warms up
                        results[who].append(rps)
            theirs, memory, sqlite = (statistics.median(results[k]) for k in order)
            print(
                f"{concurrency:>11} {theirs:>10.0f} {memory:>14.0f} {sqlite:>14.0f}  "
                f"memory {memory / theirs:.2f}x (target >= 2.00), "
                f"sqlite {sqlite / theirs:.2f}x (target >= 1.00)"
            )
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
