"""Run an ASGI app on a real loopback socket, in a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType
from typing import Any

from .._exceptions import PaymentError

__all__ = ["LocalServer"]


class LocalServer:
    """Serve ``app`` with uvicorn on ``127.0.0.1`` (a free port by default).

    ::

        with LocalServer(PaidServer({"/paid": "0.25 USD"})) as server:
            client.get(server.url + "/paid")

    Needs the ``testing`` extra (``pip install "mpp-client[testing]"``).
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            import uvicorn  # noqa: PLC0415 - optional extra
        except ImportError:  # pragma: no cover - exercised in the no-extras test
            raise PaymentError(
                'LocalServer needs uvicorn: pip install "mpp-client[testing]"'
            ) from None
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalServer:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name="mpp-local-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local server did not start")
            time.sleep(0.01)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
