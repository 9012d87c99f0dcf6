"""pytest fixtures for testing code that pays MPP servers.

Registered through the ``pytest11`` entry point, so they are available in any
project that installs mpp-client:

- ``mpp_server``: a fresh :class:`PaidServer` pricing ``/paid`` at 0.25 USD
  and ``/expensive`` at 5.00 USD (add routes with ``mpp_server.price``);
- ``mpp_server_url``: that server running on a loopback socket;
- ``mpp_wallet``: a fresh :class:`~mpp_client.DevWallet`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..methods.dev import DevWallet
from ._runner import LocalServer
from ._server import PaidServer


@pytest.fixture
def mpp_server() -> PaidServer:
    return PaidServer({"/paid": "0.25 USD", "/expensive": "5.00 USD"})


@pytest.fixture
def mpp_server_url(mpp_server: PaidServer) -> Iterator[str]:
    with LocalServer(mpp_server) as server:
        yield server.url


@pytest.fixture
def mpp_wallet() -> DevWallet:
    return DevWallet()
