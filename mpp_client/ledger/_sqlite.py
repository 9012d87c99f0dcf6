"""The SQLite ledger: the embedded default, one file, safe across threads,
asyncio tasks and processes on one machine."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .._exceptions import PaymentError
from ..identity import AgentKey
from ._sql import Cursor, SqlLedger

__all__ = ["SqliteLedger", "default_ledger_path"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_ledger_path() -> Path:
    """``$MPP_CLIENT_LEDGER``, else ``ledger.sqlite3`` in the user's data directory.

    The data directory follows the platform's convention: ``$XDG_DATA_HOME``
    (``~/.local/share``) on Linux, ``~/Library/Application Support`` on macOS,
    ``%LOCALAPPDATA%`` on Windows.
    """
    override = os.environ.get("MPP_CLIENT_LEDGER")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "mpp-client" / "ledger.sqlite3"


class SqliteLedger(SqlLedger):
    """A ledger in one SQLite file (WAL mode, full sync).

    Writers take SQLite's write lock with ``BEGIN IMMEDIATE``, so a reservation
    is atomic across threads and processes sharing the file. The file and its
    directory are created on first use (mode 0600 for the file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        agent_key: AgentKey | None = None,
        checkpoint_every: int = 256,
        busy_timeout: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(agent_key=agent_key, checkpoint_every=checkpoint_every, clock=clock)
        self.path = Path(path) if path is not None else default_ledger_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        except (OSError, sqlite3.Error) as exc:
            raise PaymentError(f"cannot open the ledger at {self.path}: {exc}") from exc
        self._setup()

    def _ddl(self) -> list[str]:
        n = self._names
        return [
            f"""CREATE TABLE IF NOT EXISTS {n.payments} (
                id TEXT PRIMARY KEY,
                created_us INTEGER NOT NULL,
                updated_us INTEGER NOT NULL,
                status TEXT NOT NULL,
                payee TEXT NOT NULL,
                method TEXT NOT NULL,
                currency TEXT NOT NULL,
                charge_nano INTEGER NOT NULL,
                tagset TEXT NOT NULL DEFAULT '',
                challenge TEXT,
                record TEXT NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS {n.payments}_budget "
            f"ON {n.payments} (currency, status, created_us, charge_nano)",
            f"CREATE INDEX IF NOT EXISTS {n.payments}_payee ON {n.payments} (payee, created_us)",
            f"""CREATE TABLE IF NOT EXISTS {n.audit} (
                seq INTEGER PRIMARY KEY,
                at_us INTEGER NOT NULL,
                kind TEXT NOT NULL,
                record_id TEXT,
                body TEXT NOT NULL,
                hash TEXT NOT NULL,
                agent TEXT,
                signature TEXT)""",
            f"""CREATE TABLE IF NOT EXISTS {n.checkpoints} (
                tree_size INTEGER PRIMARY KEY,
                root TEXT NOT NULL,
                at TEXT NOT NULL,
                agent TEXT,
                signature TEXT)""",
        ]

    def _columns(self, cur: Cursor, table: str) -> set[str]:
        cur.execute(f"PRAGMA table_info({table})")
        return {str(row[1]) for row in cur.fetchall()}

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise PaymentError(f"the ledger is unavailable: {exc}") from exc
        try:
            yield Cursor(cur, "?")
        except sqlite3.Error as exc:
            cur.execute("ROLLBACK")
            # e.g. a budget total past SQLite's 64-bit integers, or a duplicate id.
            raise PaymentError(f"the ledger refused the write: {exc}") from exc
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN")
            yield Cursor(cur, "?")
        except sqlite3.Error as exc:
            raise PaymentError(f"the ledger could not be read: {exc}") from exc
        finally:
            cur.execute("COMMIT")
            cur.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"<SqliteLedger {str(self.path)!r}>"
