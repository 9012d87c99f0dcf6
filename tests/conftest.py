from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mpp_client.testing import LocalServer

from .apps import Switchboard


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


@pytest.fixture(autouse=True)
def _private_default_ledger(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built without a ledger use the default SQLite file: keep it per test."""
    monkeypatch.setenv("MPP_CLIENT_LEDGER", str(tmp_path / "default-ledger.sqlite3"))
