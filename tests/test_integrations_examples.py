"""The integration examples run offline and show a payment and a refusal each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "example",
    [
        "mcp_paid_tools.py",
        "langchain_agent.py",
        "autogen_agent.py",
        "openai_agents_agent.py",
        "pydantic_ai_agent.py",
    ],
)
def test_the_example_pays_once_and_reports_a_refusal(example: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.count("Paid 0.25 USD") + out.count("PAID     forecast: 0.25 USD") == 1, out
    assert "exceeds the per-call cap 0.50 USD" in out, out
