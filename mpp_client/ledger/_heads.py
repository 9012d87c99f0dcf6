"""Tree heads published outside the database, as Certificate Transparency does.

A hash chain kept only inside the database cannot show that its newest
entries were deleted: whoever deletes them can rewrite the chain's head too
(and, without the agent key, there is nothing else to rewrite). So after
every transaction the ledger also *publishes* the signed head of the chain it
wrote somewhere else:

* by default, beside a SQLite ledger: ``<ledger>.heads/``, one small file per
  chain, replaced after every transaction (no fsync: a head left behind the
  database by a crash is harmless; one ahead of it means entries were removed);
* for any store, ``heads=``: a callable given each new head (a fleet publishes
  to its own place), or an object with ``publish(head)`` and, to be checked
  when the ledger opens, ``load()``.

``verify(against=heads)`` then checks that no chain shrank below, or
diverged from, a published head; opening a ledger checks the sizes against
the heads its sink can ``load()`` and raises
:class:`~mpp_client.LedgerIntegrityError` when the ledger is shorter.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._text import get_logger
from ._chain import SignedHead

__all__ = ["HeadFiles", "HeadSink", "LoadableHeads", "as_heads", "published_problems"]

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
    """One small JSON file per chain in ``directory`` (mode 0700, files 0600)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def publish(self, head: SignedHead) -> None:
        if not _CHAIN.fullmatch(head.chain):
            raise ValueError(f"not a chain id: {head.chain!r}")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / f"{head.chain}.json"
        temporary = self.directory / f".{head.chain}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(head.to_dict(), separators=(",", ":")))
        os.replace(temporary, target)  # atomic: a reader sees the old head or the new one

    def load(self) -> list[SignedHead]:
        """Every head in the directory; unreadable files are skipped (and logged)."""
        if not self.directory.is_dir():
            return []
        heads: list[SignedHead] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                heads.append(SignedHead.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError) as exc:
                logger.warning("ignoring an unreadable ledger head %s: %s", path.name, exc)
        return heads

    def __repr__(self) -> str:
        return f"HeadFiles({str(self.directory)!r})"


def publish(sink: HeadSink, head: SignedHead) -> None:
    """Give ``head`` to ``sink``; a failure is logged, never fatal (the payment stands)."""
    try:
        if isinstance(sink, LoadableHeads):
            sink.publish(head)
        else:
            sink(head)
    except Exception as exc:
        logger.warning("could not publish the ledger head of chain %s: %s", head.chain, exc)


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
