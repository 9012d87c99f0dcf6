from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mpp_client.testing import LocalServer, PaidServer

from .apps import Switchboard
from .drivers import Driver, driving
from .ledger_fixtures import durable, logged  # noqa: F401 - the ledger suites' store fixtures


@pytest.fixture(scope="session")
def _switchboard() -> Iterator[tuple[Switchboard, str]]:
    board = Switchboard()
    with LocalServer(board) as server:
        yield board, server.url


@pytest.fixture
def live(_switchboard: tuple[Switchboard, str]) -> Iterator[Any]:
    """``live(app) -> base_url``: serve ``app`` on a real loopback socket."""
    board, url = _switchboard

    def plug(app: Any) -> str:
        board.app = app
        return url

    yield plug
    board.app = None


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest, live: Any) -> Iterator[Driver]:
    """The payment loop's driver under test: ``mpp_client.Client`` or ``AsyncClient``.

    A test taking ``driver`` runs once per driver; a behaviour only one driver
    has narrows it with ``@pytest.mark.parametrize("driver", ["async"], indirect=True)``.
    See ``tests/drivers.py``.
    """
    with driving(request.param, live) as chosen:
        yield chosen


@pytest.fixture(autouse=True)
def _private_default_ledger(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built without a ledger use the default SQLite file: keep it per test."""
    monkeypatch.setenv("MPP_CLIENT_LEDGER", str(tmp_path / "default-ledger.sqlite3"))


@pytest.fixture
def shop() -> Iterator[tuple[PaidServer, str]]:
    """A paid server (0.25 USD weather, 2.00 USD report) on a loopback socket, and its URL."""
    server = PaidServer({"/weather": "0.25 USD", "/report": "2.00 USD"})
    with LocalServer(server) as local:
        yield server, local.url
