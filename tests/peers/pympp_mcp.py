"""A virtual environment with pympp's MCP extra, for the MCP interop tests.

pympp 0.16's ``mcp`` extra pins ``mcp<2`` while mpp-client's uses ``mcp`` 2,
so the pympp peer cannot share the test environment. :func:`pympp_mcp_python`
creates a virtual environment once, under the user's cache directory
(``$XDG_CACHE_HOME`` or ``~/.cache``, ``mpp-client-tests/``), installs
``pympp[mcp]`` at the version the test environment has plus what
``mpp_client`` imports (the peer checks our vouchers with it), and returns its
python. A stamp file records what was installed; a change reinstalls.
The wire between the two environments is all that must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).with_name("pympp_mcp_server.py")


class PeerSetupError(RuntimeError):
    """The pympp MCP environment could not be created (pip's output quoted)."""


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mpp-client-tests"


def requirements() -> list[str]:
    return [
        f"pympp[mcp]=={version('pympp')}",
        "pynacl>=1.5",
        "tenacity>=8.2",
        "sniffio>=1.3",
    ]


def pympp_mcp_python() -> str:
    """The python of the pympp MCP environment, created on first use."""
    wanted = requirements()
    venv = _cache() / f"pympp-mcp-{version('pympp')}-py{sys.version_info[0]}{sys.version_info[1]}"
    python = venv / "bin" / "python"
    stamp = venv / ".mpp-installed"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(wanted):
        return str(python)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False, timeout=900)
        if result.returncode != 0:
            raise PeerSetupError(f"{' '.join(step[:4])} failed:\n{result.stderr[-3000:]}")
    stamp.write_text("\n".join(wanted))
    return str(python)
