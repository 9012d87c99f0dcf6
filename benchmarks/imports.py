"""What ``import mpp_client`` costs a program, as a ratio to ``import httpx``.

Run it with ``.venv/bin/python benchmarks/imports.py`` (or ``./run bench``);
``--quick`` is a short smoke run.

Method
------
Each measurement is a whole fresh interpreter (``python -c "import X"``),
timed from the outside, because that is what a program pays: a CLI call, a
batch job's start, a serverless cold start. Rounds interleave the commands
(A B C D, then D C B A, ...) so other load on this shared machine hits them
alike; the table gives medians and ratios.

* ``bare``: ``python -c pass``, the interpreter alone;
* ``httpx``: ``import httpx``, the library we extend;
* ``mpp_client``: ``import mpp_client``;
* ``first client``: ``import mpp_client`` and a ``Client`` paying with
  ``DevWallet`` into an in-memory ledger, what the first paid request needs
  loaded (the ledger stores, the wallet's crypto) before it is sent.

Python compiles a module's source once and keeps the bytecode; an installed
wheel ships it compiled (pip compiles on install). This checkout may run with
``PYTHONDONTWRITEBYTECODE`` set, so the run first compiles into a private
``PYTHONPYCACHEPREFIX`` and measures with it: the figure is what an install
costs, not a checkout compiling itself on every start (which would cost
our modules some 30 ms more, while httpx's stay compiled in site-packages).
Target (issue 10): ``import mpp_client`` within 1.5x of ``import httpx``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mpp_client

ROOT = Path(__file__).resolve().parent.parent
FIRST_CLIENT = (
    "import mpp_client; "
    "mpp_client.Client(methods=[mpp_client.DevWallet()], ledger='memory:').close()"
)
COMMANDS = {
    "bare": "pass",
    "httpx": "import httpx",
    "mpp_client": "import mpp_client",
    "first client": FIRST_CLIENT,
}


def timed(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - started


def heaviest(env: dict[str, str], count: int) -> list[tuple[str, float]]:
    """Our modules with the largest own import time (``-X importtime``), heaviest first."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mpp_client"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    own: list[tuple[str, float]] = []
    for line in result.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():
            name = fields[2].strip()
            if name.startswith("mpp_client"):
                own.append((name, int(fields[0]) / 1000))
    return sorted(own, key=lambda item: -item[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 30, quick 6)")
    args = parser.parse_args()
    rounds = args.rounds or (6 if args.quick else 30)
    with tempfile.TemporaryDirectory(prefix="mpp-import-bench-") as cache:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache  # a private cache: nothing written to the tree
        for code in COMMANDS.values():  # compile once (or warm the page cache)
            timed(code, env)
        samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
        order = list(COMMANDS)
        for round_no in range(rounds):
            for name in order if round_no % 2 == 0 else order[::-1]:
                samples[name].append(timed(COMMANDS[name], env))
        heavy = heaviest(env, 6)
    median = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    bare, httpx_ms = median["bare"], median["httpx"]
    print(
        f"mpp_client {mpp_client.__version__}; import cost, {rounds} rounds, bytecode as installed"
    )
    print(f"{'command':<14}{'median ms':>10}{'x httpx':>9}{'imports x httpx':>17}")
    for name in COMMANDS:
        whole = median[name] / httpx_ms
        imports = (median[name] - bare) / max(httpx_ms - bare, 1e-9)
        print(f"{name:<14}{median[name]:>10.1f}{whole:>9.2f}{imports:>17.2f}")
    ratio = median["mpp_client"] / httpx_ms
    print(
        f"  import mpp_client: {ratio:.2f}x import httpx, whole process "
        f"(goal <= 1.5: {'met' if ratio <= 1.5 else 'missed'})"
    )
    print(
        "  heaviest of our modules (own import time, ms): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in heavy)
    )


if __name__ == "__main__":
    main()
