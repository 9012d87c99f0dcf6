"""Tree heads published outside the database, as Certificate Transparency does.

A hash chain kept only inside the database cannot show that its newest
entries were deleted: whoever deletes them can rewrite the chain's head too
(and, without the agent key, there is nothing else to rewrite). So after
every transaction the ledger also *publishes* the signed head of the chain it
wrote somewhere else:

* by default, beside a SQLite ledger: ``<ledger>.heads/``, one small file per
  chain, rewritten in place after every transaction (no fsync: a head left
  behind the database by a crash is harmless; one ahead of it means entries
  were removed). The file holds two fixed-size slots, written in turn, each a
  head's JSON and a digest of it: a write torn by a crash, or read half-done
  by another process, fails its digest and the other slot (one head behind)
  stands. Rewriting a slot of an open file costs one ``pwrite``; replacing a
  file (create, write, rename) costs metadata journaling on the paid path, and
  on ext4 a data flush forced by the rename;
* for any store, ``heads=``: a callable given each new head (a fleet publishes
  to its own place), or an object with ``publish(head)`` and, to be checked
  when the ledger opens, ``load()``.

``verify(against=heads)`` then checks that no chain shrank below, or
diverged from, a published head; opening a ledger checks the sizes against
the heads its sink can ``load()`` and raises
:class:`~mpp_client.LedgerIntegrityError` when the ledger is shorter.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._text import get_logger
from ._chain import SignedHead

__all__ = [
    "HeadFiles",
    "HeadSink",
    "LoadableHeads",
    "as_heads",
    "publish",
    "published_problems",
    "publisher",
]

logger = get_logger("mpp_client.ledger")
_CHAIN = re.compile(r"[0-9a-z_-]{1,64}")


@runtime_checkable
class LoadableHeads(Protocol):
    """Heads that can be read back (checked when a ledger opens)."""

    def publish(self, head: SignedHead) -> None: ...

    def load(self) -> list[SignedHead]: ...


#: What ``heads=`` takes: a callable or an object with ``publish`` (and maybe ``load``).
HeadSink = Callable[[SignedHead], None] | LoadableHeads


class HeadFiles:
    """One small file per chain in ``directory`` (mode 0700, files 0600), two slots each.

    A slot is ``<head JSON>\\t<digest>``, padded with spaces to :data:`SLOT`
    bytes and ended by a newline; the digest is the first 16 hex digits of the
    JSON's SHA-256. The slot written is the other one each time, so the file
    always holds an intact head: the newest one, or (when the newest write was
    torn) the one before it. A head too big for a slot, and the files of
    earlier versions (one plain JSON object), are whole-file JSON, replaced
    atomically: :meth:`load` reads both forms.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        #: chain -> (open file descriptor, number of heads written to it).
        self._files: dict[str, tuple[int, int]] = {}
        self._pid = os.getpid()

    def publish(self, head: SignedHead) -> None:
        if not _CHAIN.fullmatch(head.chain):
            raise ValueError(f"not a chain id: {head.chain!r}")
        text = json.dumps(head.to_dict(), separators=(",", ":"))
        slot = _slot(text)
        if slot is None:
            old = self._files.pop(head.chain, None)
            if old is not None and self._pid == os.getpid():
                os.close(old[0])  # its file is replaced: the next slot goes to the new one
            self._replace(head.chain, text)
            return
        if self._pid != os.getpid():  # a forked child: the descriptors are the parent's
            self._files, self._pid = {}, os.getpid()
        fd, written = self._files.get(head.chain) or (self._open(head.chain), 0)
        os.pwrite(fd, slot, (written % 2) * SLOT)
        self._files[head.chain] = (fd, written + 1)

    def _open(self, chain: str) -> int:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / f"{chain}.json"
        return os.open(target, os.O_RDWR | os.O_CREAT, 0o600)

    def _replace(self, chain: str, text: str) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / f"{chain}.json"
        temporary = self.directory / f".{chain}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, target)  # atomic: a reader sees the old head or the new one

    def load(self) -> list[SignedHead]:
        """Every head in the directory; unreadable files are skipped (and logged)."""
        if not self.directory.is_dir():
            return []
        heads: list[SignedHead] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                heads.append(_read_head(path.read_bytes()))
            except (OSError, ValueError) as exc:
                logger.warning("ignoring an unreadable ledger head %s: %s", path.name, exc)
        return heads

    def close(self) -> None:
        """Close the open head files (publishing again reopens them)."""
        files, self._files = self._files, {}
        if self._pid != os.getpid():
            return
        for fd, _ in files.values():
            os.close(fd)

    def __repr__(self) -> str:
        return f"HeadFiles({str(self.directory)!r})"


#: Bytes per slot of a head file: a signed head's JSON is about 400.
SLOT = 1024


def _digest(text: bytes) -> bytes:
    return hashlib.sha256(text).hexdigest()[:16].encode("ascii")


def _slot(text: str) -> bytes | None:
    """``text`` as one slot (None when it does not fit)."""
    raw = text.encode("utf-8")
    body = raw + b"\t" + _digest(raw)
    if len(body) > SLOT - 1:
        return None
    return body.ljust(SLOT - 1, b" ") + b"\n"


def _read_head(data: bytes) -> SignedHead:
    """The newest intact head of a head file, in either form; ValueError when none is."""
    if b"\t" not in data:  # JSON as written never holds a raw tab
        return SignedHead.from_dict(json.loads(data))  # whole-file JSON
    best: SignedHead | None = None
    for start in range(0, len(data), SLOT):
        body = data[start : start + SLOT].rstrip(b" \n\x00")
        raw, tab, digest = body.rpartition(b"\t")
        if not tab or digest != _digest(raw):
            continue  # never written, or torn
        head = SignedHead.from_dict(json.loads(raw))
        if best is None or head.size > best.size:
            best = head
    if best is None:
        raise ValueError("no intact head in the file")
    return best


def publisher(sink: HeadSink) -> Callable[[SignedHead], None]:
    """What to call with each new head: resolved once (a protocol check is not free)."""
    give = sink.publish if isinstance(sink, LoadableHeads) else sink

    def publish(head: SignedHead) -> None:
        # A failure is logged, never fatal: the payment stands.
        try:
            give(head)
        except Exception as exc:
            logger.warning("could not publish the ledger head of chain %s: %s", head.chain, exc)

    return publish


def publish(sink: HeadSink, head: SignedHead) -> None:
    """Give ``head`` to ``sink``; a failure is logged, never fatal (the payment stands)."""
    publisher(sink)(head)


def as_heads(
    heads: Iterable[SignedHead | Mapping[str, Any]] | LoadableHeads | str | os.PathLike[str],
) -> list[SignedHead]:
    """Heads given to ``verify(against=...)``: heads, their dicts, a sink, or a directory."""
    if isinstance(heads, str | os.PathLike):
        return HeadFiles(heads).load()
    if isinstance(heads, LoadableHeads):
        return heads.load()
    return [h if isinstance(h, SignedHead) else SignedHead.from_dict(h) for h in heads]


def published_problems(
    published: Iterable[SignedHead],
    ledger_id: str,
    size_of: Callable[[str], int],
    stored: Mapping[str, SignedHead],
) -> list[str]:
    """The cheap check made on open: no chain is shorter than (or differs at) its published head.

    ``size_of(chain)`` is the number of entries stored; ``stored`` the heads
    in the database. The full check (roots at every published size) is
    ``verify(against=...)``.
    """
    problems: list[str] = []
    for head in published:
        if head.ledger != ledger_id:
            problems.append(
                f"a published head is of another ledger ({head.ledger}, this is {ledger_id}): "
                "the database was replaced"
            )
            continue
        size = size_of(head.chain)
        if size < head.size:
            problems.append(
                f"chain {head.chain}: {size} entries stored, but its published head covers "
                f"{head.size} (entries were deleted)"
            )
            continue
        mine = stored.get(head.chain)
        if mine is None or mine.size < head.size:
            problems.append(
                f"chain {head.chain}: the stored head is behind the published one "
                f"({mine.size if mine else 0} < {head.size}: entries were deleted)"
            )
        elif mine.size == head.size and mine.root != head.root:
            problems.append(f"chain {head.chain}: the stored head differs from the published one")
    return problems
