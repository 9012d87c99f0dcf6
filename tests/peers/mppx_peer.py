"""Run mppx (the TypeScript reference SDK) peers with ``node``, for interop tests.

``scripts/chain-tools.sh`` installs the npm packages pinned in package.json
(mppx 0.11.0 and viem among them) into ``node_modules``; :func:`node_tools`
runs it once per process and checks the versions. Then:

- :class:`MppxServer` starts ``tests/peers/mppx/server.mjs`` (a paid server
  built with mppx), waits for the port it prints, and stops it on exit;
  :meth:`MppxServer.events` is what it saw (verify outcomes, echoed fields).
- :func:`run_client` runs ``tests/peers/mppx/client.mjs`` (mppx's own client
  paying one URL) and returns the JSON it prints.

Configuration travels as JSON in ``MPPX_PEER_CONFIG``; keys in their own
environment variables (never argv, where any process list shows them). Node's
stderr goes to a file and its tail is quoted in every failure. A server's
stdin is a pipe it watches: if this process dies, the pipe closes and the
server exits, so no node process outlives the tests.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).with_name("mppx")
SERVER_JS = PEERS / "server.mjs"
CLIENT_JS = PEERS / "client.mjs"

#: What package.json pins; a different install is an error, not a silent drift.
PINNED = {"mppx": "0.11.0", "viem": "2.56.8"}

_installed: str | None = None


class PeerError(RuntimeError):
    """A node peer failed to start, crashed, or printed no result (stderr quoted)."""


def node_tools() -> str:
    """The ``node`` executable, after making sure the pinned npm packages are installed."""
    global _installed  # noqa: PLW0603 - one install check per test process
    if _installed is not None:
        return _installed
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        raise PeerError("node and npm are needed for the mppx interop tests")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "chain-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise PeerError(f"scripts/chain-tools.sh failed:\n{result.stderr[-2000:]}")
    for package, version in PINNED.items():
        manifest = ROOT / "node_modules" / package / "package.json"
        found = json.loads(manifest.read_text())["version"] if manifest.exists() else None
        if found != version:
            raise PeerError(f"node_modules has {package} {found}, package.json pins {version}")
    _installed = node
    return node


def _tail(log: IO[bytes] | None, limit: int = 4000) -> str:
    if log is None:
        return ""
    log.flush()
    log.seek(0)
    return log.read()[-limit:].decode("utf-8", "replace")


def _environment(config: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPPX_")}
    env["MPPX_PEER_CONFIG"] = json.dumps(config)
    env.update(secrets)
    return env


class MppxServer:
    """An mppx-built paid server on ``127.0.0.1``, as a context manager.

    ``config`` is the JSON ``server.mjs`` reads (``realm``, ``secretKey`` and a
    section per method: ``dev``, ``evm``, ``tempo``); ``secrets`` are extra
    environment variables (the settlement key).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        secrets: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.config = dict(config)
        self._secrets = dict(secrets or {})
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        node = node_tools()
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [node, str(SERVER_JS)],
            cwd=ROOT,
            env=_environment(self.config, self._secrets),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> int:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(f"mppx server printed no port in time:\n{_tail(self._log)}")
                if not selector.select(timeout=left):
                    continue
                chunk = os.read(self._process.stdout.fileno(), 4096)
                if not chunk:
                    self._process.wait(timeout=10)
                    raise PeerError(
                        f"mppx server exited ({self._process.returncode}) before it was "
                        f"ready:\n{_tail(self._log)}"
                    )
                line += chunk
        try:
            return int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            raise PeerError(f"mppx server printed {line[:200]!r}, not its port") from None

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """What the server recorded, oldest first (``kind``: "verify", "request", ...)."""
        self.check_alive()
        response = httpx.get(self.url + "/__peer/events", timeout=10)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["events"]
        return [e for e in found if kind is None or e.get("kind") == kind]

    def check_alive(self) -> None:
        if self._process is None or self._process.poll() is not None:
            raise PeerError(f"mppx server is not running:\n{self.stderr()}")

    def stderr(self) -> str:
        return _tail(self._log)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the server exits when its stdin ends
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:  # pragma: no cover - a stuck node
                    process.kill()
                    process.wait(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MppxServer url={self.url!r}>"


def run_client(
    config: Mapping[str, Any],
    *,
    secrets: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Run mppx's client once (``client.mjs``); the JSON object it prints.

    ``config`` names the ``url`` and the method section (``evm``/``tempo``);
    the payer's key goes in ``secrets`` (``MPPX_PEER_PAYER_KEY``). The answer
    has ``response`` (status, headers, body, ``receipt`` as mppx parsed it),
    ``challenge`` (the one mppx chose, as mppx parsed it) and ``paid``; when
    mppx refused to pay it has ``error`` instead of ``response``. The client
    never prints its credential: with ``"replay": true`` it sends the same
    credential once more itself and reports that answer as ``replay``. It
    ends itself after ``timeout`` seconds even if this process is gone.
    """
    node = node_tools()
    config = {"timeoutMs": int(timeout * 1000) - 5000, **config}
    with tempfile.TemporaryFile() as log:
        try:
            result = subprocess.run(
                [node, str(CLIENT_JS)],
                cwd=ROOT,
                env=_environment(config, secrets or {}),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PeerError(f"mppx client timed out after {timeout}s:\n{_tail(log)}") from None
        lines = result.stdout.decode("utf-8", "replace").strip().splitlines()
        if result.returncode != 0 or not lines:
            raise PeerError(f"mppx client failed ({result.returncode}):\n{_tail(log)}")
        try:
            answer = json.loads(lines[-1])
        except ValueError:
            raise PeerError(f"mppx client printed {lines[-1][:200]!r}:\n{_tail(log)}") from None
        if not isinstance(answer, dict):
            raise PeerError(f"mppx client printed {answer!r}, not an object")
        answer["stderr"] = _tail(log)
        return answer
