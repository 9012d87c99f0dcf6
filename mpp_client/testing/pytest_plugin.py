"""pytest fixtures for testing code that pays MPP servers.

Registered through the ``pytest11`` entry point, so they are available in any
project that installs mpp-client:

- ``mpp_server``: a fresh :class:`PaidServer` pricing ``/paid`` at 0.25 USD
  and ``/expensive`` at 5.00 USD (add routes with ``mpp_server.price``);
- ``mpp_server_url``: that server running on a loopback socket;
- ``mpp_wallet``: a fresh :class:`~mpp_client.DevWallet`;
- ``mpp_ledger``: a :class:`~mpp_client.ledger.SqliteLedger` in the test's
  temporary directory.

A test using any of them gets a temporary *default* ledger too
(``$MPP_CLIENT_LEDGER`` points into its temporary directory), so a client
built without ``ledger=`` never writes the real ledger of the machine's user,
nor spends its budgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..ledger import SqliteLedger
from ..methods.dev import DevWallet
from ._runner import LocalServer
from ._server import PaidServer


@pytest.fixture
def mpp_default_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The path of a temporary default ledger, set as ``$MPP_CLIENT_LEDGER``."""
    path = tmp_path / "mpp-ledger" / "ledger.sqlite3"
    monkeypatch.setenv("MPP_CLIENT_LEDGER", str(path))
    return path


@pytest.fixture
def mpp_ledger(mpp_default_ledger: Path) -> Iterator[SqliteLedger]:
    """A ledger of the test's own: the temporary default ledger, opened."""
    ledger = SqliteLedger(mpp_default_ledger)
    yield ledger
    ledger.close()


@pytest.fixture
def mpp_server(mpp_default_ledger: Path) -> PaidServer:
    return PaidServer({"/paid": "0.25 USD", "/expensive": "5.00 USD"})


@pytest.fixture
def mpp_server_url(mpp_server: PaidServer) -> Iterator[str]:
    with LocalServer(mpp_server) as server:
        yield server.url


@pytest.fixture
def mpp_wallet(mpp_default_ledger: Path) -> DevWallet:
    return DevWallet()
