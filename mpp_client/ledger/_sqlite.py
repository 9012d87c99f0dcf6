"""The SQLite ledger: the embedded default, one file, safe across threads,
asyncio tasks and processes on one machine."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import PaymentError
from ._heads import HeadFiles, HeadSink
from ._sql import Cursor, SqlLedger, SqlStore, SqlTx

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["SqliteLedger", "SqliteStore", "default_ledger_path"]


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


class SqliteStore(SqlStore):
    """One SQLite file (WAL mode, full sync); writers take ``BEGIN IMMEDIATE``."""

    NO_ROWID = " WITHOUT ROWID"
    # SQLite turns an integer sum that overflows 64 bits into a float: refuse it.
    CHECK_INT = "CHECK (typeof(nano) = 'integer')"

    def __init__(self, path: Path, *, busy_timeout: float, prefix: str = "mpp_") -> None:
        super().__init__(prefix)
        self.path = path
        self.location = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA cache_size=-16384")  # 16 MiB: index pages stay hot
            # Read pages through a memory map: no system call per page a lookup visits,
            # so a lookup in a big file costs what it costs in a small one.
            self._conn.execute("PRAGMA mmap_size=2147418112")
            # Checkpoints run on a thread of their own (:class:`_Checkpointer`), not
            # inside the commit of whichever paid request crossed the WAL's limit.
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
        except (OSError, sqlite3.Error) as exc:
            raise PaymentError(f"cannot open the ledger at {path}: {exc}") from exc
        self._checkpointer = _Checkpointer(path)

    def setup(self) -> None:
        with self.write() as tx:
            assert isinstance(tx, SqlTx)
            self.migrate(tx.cur)

    def _columns(self, cur: Cursor, table: str) -> set[str]:
        cur.execute(f"PRAGMA table_info({table})")
        return {str(row[1]) for row in cur.fetchall()}

    def transient(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)

    def challenge_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and (
            f"{self.names.payments}.challenge" in str(exc)
        )

    @contextmanager
    def write(self) -> Iterator[SqlTx]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            cur.close()
            if self.transient(exc):
                raise
            raise PaymentError(f"the ledger is unavailable: {exc}") from exc
        try:
            yield SqlTx(self, Cursor(cur, "?"))
        except sqlite3.Error as exc:
            cur.execute("ROLLBACK")
            if self.transient(exc):
                raise
            # e.g. a budget total past SQLite's 64-bit integers, or a duplicate id.
            raise PaymentError(f"the ledger refused the write: {exc}") from exc
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                cur.execute("ROLLBACK")
                if self.transient(exc):
                    raise
                raise PaymentError(f"the ledger could not commit: {exc}") from exc
            self._checkpointer.committed()
        finally:
            cur.close()

    @contextmanager
    def read(self) -> Iterator[SqlTx]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN")
            yield SqlTx(self, Cursor(cur, "?"))
        except sqlite3.Error as exc:
            if self.transient(exc):
                raise
            raise PaymentError(f"the ledger could not be read: {exc}") from exc
        finally:
            cur.execute("COMMIT")
            cur.close()

    @contextmanager
    def peek(self) -> Iterator[SqlTx]:
        # No BEGIN/COMMIT around them: each statement reads in a snapshot of its own.
        cur = self._conn.cursor()
        try:
            yield SqlTx(self, Cursor(cur, "?"))
        except sqlite3.Error as exc:
            if self.transient(exc):
                raise
            raise PaymentError(f"the ledger could not be read: {exc}") from exc
        finally:
            cur.close()

    def stream(self, tx: SqlTx, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        # A second cursor on the same connection reads in the same transaction.
        cur = self._conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            while rows := cur.fetchmany(2000):
                yield from rows
        finally:
            cur.close()

    def settle_bulk(self) -> None:
        # An import outruns the background checkpoints, and the WAL they leave
        # behind would be copied (and fsynced) while later commits wait on the
        # disk: the slowest paid requests after an import were those. Copied and
        # truncated here instead, where nothing waits but the import.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        self._checkpointer.stop()
        # The last connection to close checkpoints the whole WAL and deletes it.
        self._conn.close()


class _Checkpointer:
    """Copies the WAL into the database file on a thread, every :attr:`EVERY` commits.

    SQLite's automatic checkpoint runs inside the commit that crosses the WAL's
    limit (1,000 pages), copying and fsyncing the database file while that
    paid request waits: the slowest requests of a ledger were those. Here a
    daemon thread with its own connection runs a PASSIVE checkpoint (it waits
    for no reader or writer, and none waits for it), so commits only append
    to the WAL and fsync it. Each commit is durable in the WAL either way; a
    checkpoint only bounds the WAL's size.
    """

    #: Commits between checkpoints (a paid request's two commits write ~20 pages).
    EVERY = 64

    def __init__(self, path: Path) -> None:
        self._path = path
        self._commits = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def committed(self) -> None:
        self._commits += 1
        if self._commits % self.EVERY:
            return
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            self._pid = os.getpid()  # a forked child starts a thread of its own
            self._thread = threading.Thread(
                target=self._run, name="mpp-ledger-checkpoint", daemon=True
            )
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # tried again after the next EVERY commits
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                # A failure is harmless: the WAL grows until the next checkpoint, or the close.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            thread.join(timeout=5)


class SqliteLedger(SqlLedger):
    """A ledger in one SQLite file (WAL mode, full sync).

    Writers take SQLite's write lock with ``BEGIN IMMEDIATE``, so a reservation
    is atomic across threads and processes sharing the file. The file and its
    directory are created on first use (mode 0600 for the file). Every
    transaction's tree head is published to ``<file>.heads/`` (``heads=``
    another sink, or False for none); opening checks the file is not behind
    those heads (:class:`~mpp_client.LedgerIntegrityError`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        agent_key: AgentKey | None = None,
        trusted_agents: Sequence[str] = (),
        heads: HeadSink | bool = True,
        checkpoint_every: int = 256,
        busy_timeout: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        self.store = SqliteStore(self.path, busy_timeout=busy_timeout)
        sink: HeadSink | None
        if isinstance(heads, bool):
            sink = HeadFiles(self.path.with_name(self.path.name + ".heads")) if heads else None
        else:
            sink = heads
        super().__init__(
            self.store,
            agent_key=agent_key,
            trusted_agents=trusted_agents,
            heads=sink,
            checkpoint_every=checkpoint_every,
            clock=clock,
        )
        try:
            self.store.setup()
            self._open()
        except BaseException:
            self.store.close()
            raise

    def __repr__(self) -> str:
        return f"<SqliteLedger {str(self.path)!r}>"
