"""A local chain for tests: Foundry's ``anvil`` on a free loopback port.

:class:`Anvil` starts the binary (``scripts/chain-tools.sh`` installs it from
npm), waits until the node answers, and stops it; :attr:`Anvil.rpc` is the
package's one chain client (:class:`~mpp_client.methods._chain._rpc.ChainRpc`)
on it. :class:`~mpp_client.testing.tempo.TempoChain` runs it as a Tempo node.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from ..methods._chain._rpc import ChainRpc, ChainTransportError, RpcError

__all__ = ["Anvil"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Anvil:
    """A local anvil node on ``127.0.0.1`` at a free port, as a context manager.

    ``binary`` is the anvil executable (``scripts/chain-tools.sh`` prints the
    path of the one the npm package ``@foundry-rs/anvil-linux-amd64`` ships).
    No dev accounts are created unless ``accounts`` asks for some (anvil's
    default mnemonic; on ``--network tempo`` they also hold its stablecoins):
    fund test keys with :meth:`set_balance`.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        chain_id: int = 31337,
        startup_timeout: float = 20.0,
        extra_args: Sequence[str] = (),
        accounts: int = 0,
    ) -> None:
        self.binary = os.fspath(binary)
        self.chain_id = chain_id
        self.accounts = accounts
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._rpc: ChainRpc | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rpc(self) -> ChainRpc:
        if self._rpc is None:
            raise RuntimeError("anvil is not running")
        return self._rpc

    def start(self) -> Self:
        """Start the node and wait until it answers; RuntimeError with its log otherwise."""
        log = ""
        for _ in range(3):
            self.port = _free_port()
            args = [
                self.binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(self.chain_id),
                "--accounts",
                str(self.accounts),
                "--silent",
                *self.extra_args,
            ]
            # Output goes to a file, never a pipe nobody reads (a full pipe blocks the node).
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
            self._process = subprocess.Popen(  # noqa: S603 - a fixed argument list
                args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
            # One attempt per read: the readiness loop below does its own polling.
            self._rpc = ChainRpc(self.url, timeout=10.0, attempts=1)
            if self._wait_ready():
                return self
            self._log.seek(0)
            log = self._log.read()[-2000:].decode("utf-8", "replace")
            self.stop()
        raise RuntimeError(f"anvil did not start ({self.binary}): {log}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False  # exited: the port was taken, or the binary failed
            try:
                if int(self.rpc.call("eth_chainId"), 16) == self.chain_id:
                    return True
            except (ChainTransportError, RpcError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck node
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc.call("anvil_setBalance", address, hex(wei))

    def set_code(self, address: str, code: str) -> None:
        self.rpc.call("anvil_setCode", address, code)

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
        return f"<Anvil url={self.url!r} chain_id={self.chain_id}>"
