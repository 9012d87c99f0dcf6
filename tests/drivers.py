"""One way for a test to pay through either driver of the payment loop.

The loop is written once and driven twice (``mpp_client/_flow``): blocking
for :class:`mpp_client.Client`, awaited for :class:`mpp_client.AsyncClient`.
A test written against :class:`Driver` runs on both::

    def test_x(driver):
        pay = driver.client(PaidServer({"/paid": "0.25 USD"}), methods=[...], policy=...)
        response = pay.get("/paid")           # or pay.post(...), pay.stream(...)

``pay.get`` returns the ``httpx.Response`` or raises what the client raised,
whichever driver runs. The async client runs on a real asyncio event loop
(one :class:`asyncio.Runner` per test, so its connection pool lives across
calls), so cancellation and shielding are real, not simulated.

Where the requests go (``via``):

``"socket"`` (the default)
    The app is served by uvicorn on a loopback port (the ``live`` fixture).
    Without ``base_url`` the client talks to ``http://127.0.0.1:PORT``
    directly. With a ``base_url`` naming another host (``https://api.test``,
    ``http://10.0.0.8``), every request is still sent to that loopback server
    over plain TCP, the way ``curl --resolve`` pins a name to an address: the
    client and the payment flow see the URL as given (its scheme and host
    decide whether a credential may go), the server gets its ``Host`` header.
    No TLS is spoken on the wire; nothing in these tests reads it.
``"asgi"``
    The async client calls the app in-process through ``httpx.ASGITransport``.
    httpx has no sync ASGI transport (only WSGI), so the sync driver serves the
    app on the loopback socket instead, as above.

A ``str`` in place of the app is the base URL of a server already running; no
app at all means the caller passes its own ``transport=`` (a
``httpx.MockTransport`` works with both drivers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import httpx

from mpp_client import AsyncClient, Client

__all__ = ["Call", "Driver", "DriverName", "Paying", "Via", "driving"]

T = TypeVar("T")

DriverName = Literal["sync", "async"]
Via = Literal["socket", "asgi"]
#: One request for :meth:`Paying.gather`: method, URL, and httpx keyword arguments.
Call = tuple[str, str, dict[str, Any]]


class _Pinned(httpx.BaseTransport):
    """Sends every request to one loopback origin, whatever host its URL names."""

    def __init__(self, origin: httpx.URL) -> None:
        self._origin = origin
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(_pin(request, self._origin))

    def close(self) -> None:
        self._inner.close()


class _AsyncPinned(httpx.AsyncBaseTransport):
    def __init__(self, origin: httpx.URL) -> None:
        self._origin = origin
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(_pin(request, self._origin))

    async def aclose(self) -> None:
        await self._inner.aclose()


def _pin(request: httpx.Request, origin: httpx.URL) -> httpx.Request:
    # A copy: the client keeps the original request (and its URL) on the response.
    url = request.url.copy_with(scheme="http", host=origin.host, port=origin.port)
    return httpx.Request(
        request.method,
        url,
        headers=request.headers,  # the Host header still names the original host
        stream=request.stream,
        extensions=request.extensions,
    )


class Paying:
    """A paying client under test: the same calls, the same results, either driver."""

    def __init__(self, driver: Driver, client: Client | AsyncClient) -> None:
        self.driver = driver
        #: The ``mpp_client.Client`` or ``mpp_client.AsyncClient`` itself.
        self.client = client
        self.closed = False

    # -- what the client has ----------------------------------------------------------

    @property
    def ledger(self) -> Any:
        return self.client.ledger

    @property
    def payment_auth(self) -> Any:
        return self.client.payment_auth

    def __repr__(self) -> str:
        return repr(self.client)

    # -- requests ----------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if isinstance(self.client, Client):
            return self.client.request(method, url, **kwargs)
        return self.driver.run(self.client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def stream(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, bytes]:
        """Send with ``client.stream(...)``, read the body chunk by chunk inside it.

        Returns the response (closed by then) and the body read from the stream.
        """
        if isinstance(self.client, Client):
            with self.client.stream(method, url, **kwargs) as response:
                return response, b"".join(response.iter_bytes())
        client = self.client

        async def streamed() -> tuple[httpx.Response, bytes]:
            async with client.stream(method, url, **kwargs) as response:
                return response, b"".join([chunk async for chunk in response.aiter_bytes()])

        return self.driver.run(streamed())

    def gather(
        self, calls: Sequence[Call], *, threads: int = 8
    ) -> list[httpx.Response | Exception]:
        """Make ``calls`` concurrently: in ``threads`` threads (sync), as tasks (async).

        Returns each call's response, or the exception it raised, in order.
        """
        if isinstance(self.client, Client):
            client = self.client

            def one(call: Call) -> httpx.Response | Exception:
                method, url, kwargs = call
                try:
                    return client.request(method, url, **kwargs)
                except Exception as exc:
                    return exc

            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(one, calls))
        aclient = self.client

        async def aone(call: Call) -> httpx.Response | Exception:
            method, url, kwargs = call
            try:
                return await aclient.request(method, url, **kwargs)
            except Exception as exc:
                return exc

        async def every() -> list[httpx.Response | Exception]:
            return list(await asyncio.gather(*(aone(call) for call in calls)))

        return self.driver.run(every())

    def run(self, work: Callable[[AsyncClient], Coroutine[Any, Any, Any]]) -> Any:
        """Async only: run ``work(client)`` on the driver's event loop (e.g. a ``wait_for``)."""
        assert isinstance(self.client, AsyncClient), "run() is for the async driver"
        return self.driver.run(work(self.client))

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if isinstance(self.client, Client):
            self.client.close()
        else:
            self.driver.run(self.client.aclose())

    def __enter__(self) -> Paying:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Driver:
    """Builds paying clients for one driver (``"sync"`` or ``"async"``) in one test."""

    def __init__(self, name: DriverName, live: Callable[[Any], str]) -> None:
        self.name = name
        #: The client class this driver runs: ``mpp_client.Client`` or ``AsyncClient``.
        self.Client: type[Client] | type[AsyncClient] = Client if name == "sync" else AsyncClient
        self._live = live
        self._served: Any = None
        self._runner: asyncio.Runner | None = None
        self._open: list[Paying] = []

    @property
    def is_async(self) -> bool:
        return self.name == "async"

    def __repr__(self) -> str:
        return f"<Driver {self.name}>"

    def serve(self, app: Any) -> str:
        """Serve ``app`` on the loopback socket; its base URL. One app per test."""
        if self._served is not None and self._served is not app:
            raise RuntimeError("one loopback app per test: combine them into one app")
        self._served = app
        return self._live(app)

    def client(self, target: Any = None, /, *, via: Via = "socket", **kwargs: Any) -> Paying:
        """A paying client for ``target`` (an ASGI app, a base URL, or None), see the module."""
        if isinstance(target, str):
            kwargs.setdefault("base_url", target)
        elif target is not None:
            if via == "asgi" and self.is_async:
                kwargs.setdefault("base_url", "https://api.test")
                kwargs["transport"] = httpx.ASGITransport(app=target)
            else:
                origin = self.serve(target)
                if via == "asgi":
                    # httpx has no sync ASGI transport: the socket, at the ASGI default URL.
                    kwargs.setdefault("base_url", "https://api.test")
                if "base_url" not in kwargs:
                    kwargs["base_url"] = origin
                else:
                    pinned = _Pinned if not self.is_async else _AsyncPinned
                    kwargs["transport"] = pinned(httpx.URL(origin))
        paying = Paying(self, self.Client(**kwargs))
        self._open.append(paying)
        return paying

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` to the end on this test's event loop (async driver)."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coroutine)

    def close(self) -> None:
        try:
            for paying in self._open:
                paying.close()
        finally:
            if self._runner is not None:
                self._runner.close()
                self._runner = None


@contextmanager
def driving(name: DriverName, live: Callable[[Any], str]) -> Iterator[Driver]:
    """A driver for one test; its clients closed and its event loop shut at the end."""
    driver = Driver(name, live)
    try:
        yield driver
    finally:
        driver.close()
