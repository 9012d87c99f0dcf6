"""Does challenge parsing stay linear on hostile headers? Time per byte as input grows.

Run it with ``.venv/bin/python benchmarks/protocol_parse.py`` (or ``./run bench``);
``--quick`` is a short smoke run.

Method
------
Each shape is a header a hostile server could send, built at 2,000 and
16,000 pathological characters (8x), both under the 16 KiB challenge limit:
unclosed quoted strings full of backslashes, runs of escaped quotes, runs of
separators, bare tokens, ``\\uXXXX`` escapes, a deeply nested JSON request.
The two sizes of one shape run in alternating order (small, large, then
large, small, ...) so load on the machine affects both alike; each sample is
one ``parse_challenges`` call timed with ``time.perf_counter_ns``. The
figure is the ratio of the medians: linear parsing gives about 8x (less, with
fixed costs), quadratic about 64x. The target is under 16x.

The test suite checks the same property without a clock: it counts the
parser's steps (tests/test_protocol.py::test_parsing_is_linear).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import statistics
import time
from collections.abc import Callable

from mpp_client import ChallengeError, parse_challenges

_PREFIX = 'Payment id="a", realm="r", method="m", intent="charge", request="e30", '


def _b64json(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


SHAPES: dict[str, Callable[[int], str]] = {
    "backslashes_unclosed": lambda n: _PREFIX + 'x="' + "\\" * n,
    "escaped_quotes_unclosed": lambda n: _PREFIX + 'x="' + '\\"' * (n // 2),
    "escaped_quotes_closed": lambda n: _PREFIX + 'x="' + '\\"' * (n // 2) + '"',
    "bare_quotes_after_value": lambda n: _PREFIX + "x=a" + '"' * n,
    "unicode_escapes": lambda n: _PREFIX + 'description="' + "\\ud83d" * (n // 6) + '"',
    "separators": lambda n: _PREFIX + ", \t" * (n // 3),
    "bare_tokens": lambda n: _PREFIX + "a " * (n // 2),
    "nested_json": lambda n: _PREFIX.replace('"e30"', '"' + _b64json("[" * (n * 3 // 4)) + '"'),
}


def _once(header: str) -> int:
    start = time.perf_counter_ns()
    with contextlib.suppress(ChallengeError):
        parse_challenges(header)
    return time.perf_counter_ns() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    rounds = 20 if args.quick else 200
    print(f"{'shape':26} {'2k median':>10} {'16k median':>11} {'ratio':>7}  target <16x")
    for name, build in SHAPES.items():
        small, large = build(2_000), build(16_000)
        samples: dict[str, list[int]] = {"small": [], "large": []}
        for i in range(rounds):
            order = (("small", small), ("large", large))
            for label, header in order if i % 2 == 0 else reversed(order):
                samples[label].append(_once(header))
        s, big = statistics.median(samples["small"]), statistics.median(samples["large"])
        ratio = big / s
        verdict = "PASS" if ratio < 16 else "MISS"
        print(f"{name:26} {s / 1e3:8.1f}us {big / 1e3:9.1f}us {ratio:6.1f}x  {verdict}")


if __name__ == "__main__":
    main()
