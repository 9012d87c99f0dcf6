"""Checking a ledger: its chains, their heads, the payments against the log, the totals.

What :func:`verify` proves, for the snapshot it reads:

* every chain's entries hash to the root of a tree head stored for it, link
  each to the one before, and sit at the position their header says; the
  checkpoints are prefixes of it (nothing modified, inserted, reordered, or
  deleted in the middle);
* each tree head is signed: by a trusted agent when ``trusted`` is given,
  by someone whose signature checks otherwise; unsigned heads are a problem
  when ``require_signed``;
* no chain is shorter than, or differs at, a head published outside the
  database (``against``): that is what catches deleting the newest entries,
  or the newest payment with its entries, together with the stored head;
* every payment row says exactly what the newest entry about it says
  (every column budgets are counted over, and the record itself);
* every running total matches the payments it summarises.

What it cannot prove: that nothing happened which was never written (a
writer that pays without recording), or that the newest entries of a chain
whose head was never published elsewhere were not removed together with that
head; and a stolen agent key signs whatever its holder likes. Those need the
published heads kept where the database's writers cannot change them, and a
key kept where a payment's writer can use it but not read it.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._chain import FORMAT, GENESIS, SignedHead, parse_entry
from ._legacy import verify_chain
from ._merkle import Frontier, root
from ._record import PaymentRecord, challenge_key
from ._store import PaymentRow, Tx
from ._totals import Recount, tagset, to_nano, us

__all__ = ["VerifyReport", "verify"]


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify` found. ``ok`` only when ``problems`` is empty."""

    #: Log entries checked (every chain, the legacy one included).
    events: int = 0
    #: Entries under a tree head whose signature checked (or signed legacy events).
    signed: int = 0
    checkpoints: int = 0
    chains: int = 0
    payments: int = 0
    #: Running totals compared with the payments.
    totals: int = 0
    #: Heads published outside the database that were compared.
    published: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        chains = "chain" if self.chains == 1 else "chains"
        head = (
            f"{self.events} events ({self.signed} signed) in {self.chains} {chains}, "
            f"{self.checkpoints} checkpoints, {self.payments} payments, {self.totals} totals"
        )
        if self.published:
            head += f", {self.published} published heads"
        if self.ok:
            return f"ledger verified: {head}"
        return f"ledger verification FAILED: {head}; " + "; ".join(self.problems[:20])


@dataclass(slots=True)
class _Chain:
    expected: int = 0
    prev: str = GENESIS
    frontier: Frontier = field(default_factory=Frontier)
    #: Sizes whose root is wanted (checkpoints, published heads) -> root.
    roots: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Latest:
    rev: int
    where: str
    chain: str
    seq: int
    columns: Any
    body: bytes


def _where(chain: str, seq: int) -> str:
    return f"event {chain[:8]}/{seq}"


def _signature(
    head: SignedHead, what: str, trusted: set[str] | None, require_signed: bool
) -> str | None:
    """The problem with a head's signature, if any."""
    if head.agent is None and head.signature is None:
        return f"{what}: unsigned" if require_signed else None
    if not head.signature_ok():
        return f"{what}: bad signature"
    if trusted is not None and head.agent not in trusted:
        return f"{what}: signed by untrusted agent {head.agent}"
    return None


def verify(
    tx: Tx,
    *,
    ledger_id: str,
    trusted: set[str] | None,
    require_signed: bool,
    against: Iterable[SignedHead] = (),
) -> VerifyReport:
    """Check everything in one snapshot (see the module docstring).

    A ledger that is intact passes the fast check (:func:`_fast`), which
    compares bytes where the entry format allows and parses as little as it
    can; it accepts only what the full check below accepts. Anything it
    does not accept, the full check reads again to name every problem.
    """
    published = list(against)
    report = _fast(tx, ledger_id, trusted, require_signed, published)
    if report is not None:
        return report
    return _full(tx, ledger_id, trusted, require_signed, published)


def _full(
    tx: Tx,
    ledger_id: str,
    trusted: set[str] | None,
    require_signed: bool,
    published: list[SignedHead],
) -> VerifyReport:
    """Check everything, naming each problem where it is."""
    report = VerifyReport()
    problems = report.problems
    heads = {h.chain: h for h in tx.heads()}
    checkpoints = tx.checkpoints()

    # -- the legacy chain --------------------------------------------------------------
    legacy_latest: dict[str, tuple[int, Mapping[str, Any] | None]] = {}
    legacy_leaves: list[bytes] = []
    legacy = tx.legacy_events()
    if legacy:
        old, legacy_latest = verify_chain(
            legacy,
            tx.legacy_checkpoints(),
            trusted_agents=trusted,
            require_signatures=require_signed,
        )
        report.events += old.events
        report.signed += old.signed
        report.checkpoints += old.checkpoints
        report.chains += 1
        problems.extend(old.problems)
        legacy_leaves = old.leaves
        legacy_head = heads.get("legacy")
        if legacy_head is not None:
            _compare_head(report, legacy_head, len(old.leaves), root(old.leaves).hex(), "legacy")

    # -- the chains ----------------------------------------------------------------------
    chains: dict[str, _Chain] = {}
    for wanted in [*checkpoints, *published]:
        if wanted.chain != "legacy":
            chains.setdefault(wanted.chain, _Chain()).roots[wanted.size] = ""
    latest: dict[str, _Latest] = {}
    for stored in tx.all_entries():
        report.events += 1
        state = chains.get(stored.chain)
        if state is None:
            state = chains[stored.chain] = _Chain()
        where = _where(stored.chain, stored.seq)
        if stored.seq != state.expected:
            kind = "missing (deleted?)" if stored.seq > state.expected else "out of order"
            problems.append(f"{where}: expected event {state.expected}, {kind}")
            state.expected = stored.seq
        parsed = parse_entry(stored.entry)
        if parsed is None:
            problems.append(f"{where}: not a log entry (modified)")
        else:
            fields, body = parsed
            _format, chain, seq, prev, _at, _kind, record_id, rev, columns = fields
            if chain != stored.chain or seq != stored.seq:
                problems.append(f"{where}: its header says {_where(str(chain), seq)} (moved)")
            if prev != state.prev:
                problems.append(
                    f"{where}: does not follow the previous event (inserted, deleted or reordered)"
                )
            if record_id != stored.record_id:
                problems.append(f"{where}: stored for {stored.record_id}, written for {record_id}")
            if isinstance(record_id, str) and isinstance(rev, int):
                seen = latest.get(record_id)
                if seen is not None and seen.rev == rev:
                    problems.append(f"{where}: a second revision {rev} of payment {record_id}")
                if seen is None or rev > seen.rev:
                    latest[record_id] = _Latest(rev, where, stored.chain, stored.seq, columns, body)
        leaf = hashlib.sha256(b"\x00" + stored.entry).digest()
        state.frontier.append(leaf)
        state.prev = leaf.hex()
        state.expected += 1
        if state.frontier.size in state.roots:
            state.roots[state.frontier.size] = state.frontier.root().hex()
    _check_heads(
        report,
        chains,
        ledger_id=ledger_id,
        trusted=trusted,
        require_signed=require_signed,
        published=published,
        heads=heads,
        checkpoints=checkpoints,
        legacy_leaves=legacy_leaves,
    )

    # -- payments against the log, and recounted for the totals --------------------------
    filters = tx.all_filters()
    recount = Recount(filters)
    seen_ids: set[str] = set()
    answered: set[str] = set()
    for row in tx.all_payments():
        report.payments += 1
        recount.add_row(row)
        seen_ids.add(row.id)
        mine = latest.get(row.id)
        if mine is not None:
            _check_row(problems, row, mine)
        elif row.id in legacy_latest:
            _check_legacy_row(problems, row, legacy_latest[row.id], answered)
        else:
            problems.append(f"payment {row.id}: no audit event records it")
    for record_id, mine in latest.items():
        if record_id not in seen_ids:
            problems.append(f"payment {record_id}: in audit {mine.where} but deleted")
    for record_id, (seq, record) in legacy_latest.items():
        if record_id not in seen_ids and record_id not in latest and record is not None:
            problems.append(f"payment {record_id}: in audit legacy event {seq} but deleted")

    # -- totals against the payments -------------------------------------------------------
    expected = recount.cells()
    names = {f.id: str(f) for f in filters}
    report.totals = 0
    for key, have_total in tx.all_totals():
        want = expected.pop(key, None)
        if have_total == (0, 0) and want is None:
            continue
        report.totals += 1
        if want is None or have_total != (want[0], want[1]):
            problems.append(_totals_problem(names, key, have_total, want))
    for key, want in sorted(expected.items()):  # counted by the payments, not stored
        problems.append(_totals_problem(names, key, (0, 0), want))
    return report


class _Grown(Protocol):
    """A chain's tree as read from the log, and its roots at the sizes asked for."""

    frontier: Frontier
    roots: dict[int, str]


def _check_heads(
    report: VerifyReport,
    chains: Mapping[str, _Grown],
    *,
    ledger_id: str,
    trusted: set[str] | None,
    require_signed: bool,
    published: list[SignedHead],
    heads: Mapping[str, SignedHead],
    checkpoints: list[SignedHead],
    legacy_leaves: list[bytes],
) -> None:
    """The ``chains`` against their stored heads, the checkpoints and the published
    heads; each signature once. Both checks of :func:`verify` end their log pass here."""

    problems = report.problems
    sizes = {chain: grown.frontier.size for chain, grown in chains.items()}
    tops = {chain: grown.frontier.root().hex() for chain, grown in chains.items()}
    roots = {chain: grown.roots for chain, grown in chains.items()}
    report.chains += len({c for c, size in sizes.items() if size} | set(heads) - {"legacy"})
    for chain, size in sizes.items():
        head = heads.get(chain)
        if head is None:
            if size:
                problems.append(f"chain {chain[:8]}: {size} events but no tree head")
            continue
        if _compare_head(report, head, size, tops[chain], chain[:8]) is None:
            sig = _signature(head, f"chain {chain[:8]}", trusted, require_signed)
            if sig is not None:
                problems.append(sig)
            elif head.signature is not None:
                report.signed += size
        if head.ledger != ledger_id:
            problems.append(f"chain {chain[:8]}: its head is of another ledger ({head.ledger})")
    for chain, head in heads.items():
        if chain != "legacy" and chain not in sizes and head.size:
            problems.append(
                f"chain {chain[:8]}: its head covers {head.size} events, none stored (deleted)"
            )
    for mark in checkpoints:
        report.checkpoints += 1
        what = f"checkpoint {mark.chain[:8]}/{mark.size}"
        have = roots.get(mark.chain, {}).get(mark.size, "")
        if not have:
            problems.append(f"{what}: the chain is shorter than this checkpoint (truncated)")
            continue
        if have != mark.root:
            problems.append(f"{what}: tree head does not match the events (history rewritten)")
        sig = _signature(mark, what, trusted, require_signed)
        if sig is not None:
            problems.append(sig)
    for head in published:
        report.published += 1
        what = f"published head {head.chain[:8]}/{head.size}"
        if head.ledger != ledger_id:
            problems.append(f"{what}: of another ledger ({head.ledger}): the database was replaced")
            continue
        have = roots.get(head.chain, {}).get(head.size, "")
        stored_size = sizes.get(head.chain, 0)
        if head.chain == "legacy":
            if head.size <= len(legacy_leaves):
                have = root(legacy_leaves[: head.size]).hex()
            stored_size = len(legacy_leaves)
        if not have:
            problems.append(
                f"{what}: the chain has {stored_size} events, fewer than published (deleted)"
            )
            continue
        if have != head.root:
            problems.append(f"{what}: the events differ from what was published (rewritten)")
        if head == heads.get(head.chain):
            continue  # the stored head itself: its signature was checked above
        sig = _signature(head, what, trusted, require_signed)
        if sig is not None:
            problems.append(sig)


def _totals_problem(
    names: Mapping[int, str],
    key: tuple[int, int, int, str],
    have: tuple[int, int],
    want: list[int] | None,
) -> str:
    filter_id, level, bucket, currency = key
    name = names.get(filter_id, f"unregistered filter {filter_id}")
    n, nano = want if want is not None else (0, 0)
    return (
        f"totals of budget filter ({name}), level {level} bucket {bucket} {currency}: "
        f"stored {have[0]} payments / {have[1]} nano, the payments say {n} / {nano} (modified)"
    )


def _compare_head(
    report: VerifyReport, head: SignedHead, size: int, root_hex: str, name: str
) -> str | None:
    problem: str | None = None
    if head.size > size:
        problem = (
            f"chain {name}: {size} events, fewer than its tree head covers ({head.size}): truncated"
        )
    elif head.size < size:
        problem = f"chain {name}: {size - head.size} events after its tree head (appended)"
    elif head.root != root_hex:
        problem = f"chain {name}: tree head does not match the events (history rewritten)"
    if problem is not None:
        report.problems.append(problem)
    return problem


def _check_row(problems: list[str], row: PaymentRow, latest: _Latest) -> None:
    where = f"payment {row.id}: state differs from audit {latest.where} (modified)"
    columns = latest.columns
    if not isinstance(columns, list) or len(columns) != 10:
        problems.append(where)
        return
    said = row.columns()
    if said != columns:
        # Name the charge on its own: that is the budget-freeing edit.
        if said[:5] + said[6:] == columns[:5] + columns[6:]:
            problems.append(f"payment {row.id}: charge differs from the audit log")
        else:
            problems.append(where)
        return
    if (
        row.record.encode("utf-8") != latest.body
        or row.rev != latest.rev
        or (row.log_chain, row.log_seq) != (latest.chain, latest.seq)
    ):
        problems.append(where)


def _check_legacy_row(
    problems: list[str],
    row: PaymentRow,
    logged: tuple[int, Mapping[str, Any] | None],
    answered: set[str],
) -> None:
    """A payment last changed in the legacy chain: compared as the old format did."""
    seq, record = logged
    if record is None:
        return
    try:
        said = PaymentRecord.from_dict(record)
        key = challenge_key(said.realm, said.challenge_id)
        first = key not in answered
        answered.add(key)
        same = (
            said.id == row.id
            and json.loads(row.record) == record
            and row.status == said.status
            and [row.created_us, row.payee, row.method, row.currency, row.scope]
            == [us(said.created_at), said.payee, said.method, said.charge.currency, ""]
            and row.tagset == tagset(said.tags)
            and row.challenge == (key if first else None)
            and row.rev is None
        )
        same_charge = row.charge_nano == to_nano(said.charge)
    except (KeyError, TypeError, ValueError, AttributeError):
        same = same_charge = False
    if not same:
        problems.append(f"payment {row.id}: state differs from audit legacy event {seq} (modified)")
    elif not same_charge:
        problems.append(f"payment {row.id}: charge differs from the audit log")


# -- the fast check ------------------------------------------------------------------------


def _header_encoder() -> Callable[[object], str]:
    """JSON as :func:`~._chain.make_entry` writes a header (compact, not ASCII-escaped)."""
    options = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}
    encode: Callable[[object], str] = json.JSONEncoder(**options).encode  # type: ignore[arg-type]
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
    if make is None:
        return encode

    def refuse(value: object) -> object:
        raise TypeError(type(value).__name__)

    # The C encoder itself, without the Python layers around it: a third less per row.
    fast = make(None, refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False)

    def header(value: object) -> str:
        return "".join(fast(value, 0))

    return header


#: What lies between an entry's ``prev`` and its ``record_id`` as the writer puts it:
#: ``at_us`` (a JSON integer) and ``kind`` (a plain JSON string). Anything else is
#: left to the full check.
_MIDDLE = re.compile(rb'-?(?:0|[1-9][0-9]*),"[a-z_]+"')
_HEADER = _header_encoder()
_DECODE = json.JSONDecoder().decode
_FORMAT_OPEN = b'["' + FORMAT.encode() + b'",'
#: Leaves collected before they are hashed into their chain's tree, level by level.
_BATCH = 4096


class _Unsure(Exception):
    """The fast check cannot accept the snapshot: the full check decides."""


def _fast(
    tx: Tx,
    ledger_id: str,
    trusted: set[str] | None,
    require_signed: bool,
    published: list[SignedHead],
) -> VerifyReport | None:
    """The report of an intact ledger; None for anything else (the full check then names it).

    It proves what the full check proves, by other means:

    * an entry's chain, seq and link are a byte prefix built from where it is
      stored and the leaf before it, so a header is parsed only when no payment
      row names its entry (older revisions, refusals);
    * the entry a payment row names must end with exactly the header tail and
      body the row implies (record id, revision, columns, record), between them
      a well-formed ``at_us`` and ``kind``; and the row's revision must be the
      newest of that record (revisions only grow along the log);
    * leaves are hashed into each chain's tree in blocks (:meth:`Frontier.extend`);
    * the totals are recounted in one pass and compared as one sorted list.
    """
    if tx.legacy_events():
        return None  # the legacy chain is checked as it always was, by the full check
    try:
        return _fast_report(tx, ledger_id, trusted, require_signed, published)
    except (_Unsure, TypeError, ValueError, AttributeError, KeyError, IndexError):
        return None


def _fast_report(
    tx: Tx,
    ledger_id: str,
    trusted: set[str] | None,
    require_signed: bool,
    published: list[SignedHead],
) -> VerifyReport:
    report = VerifyReport()
    heads = {h.chain: h for h in tx.heads()}
    checkpoints = tx.checkpoints()
    wanted: dict[str, set[int]] = {}
    for mark in [*checkpoints, *published]:
        wanted.setdefault(mark.chain, set()).add(mark.size)

    # -- the payments: what each one's newest entry must end with ------------------------
    filters = tx.all_filters()
    recount = Recount(filters)
    add = recount.add
    named: dict[tuple[str, int], tuple[str, int, bytes]] = {}
    revs: dict[str, int] = {}
    for row in tx.payment_rows():
        (record_id, created, updated, status, scope, payee, method, currency, nano, tags,
         challenge, record, rev, log_chain, log_seq) = row  # fmt: skip
        # Exactly the types the full check reads them as (it converts, this compares).
        if not (
            type(created) is int
            and type(updated) is int
            and type(nano) is int
            and type(rev) is int  # None: last changed in the legacy chain
            and type(record_id) is str
            and type(status) is str
            and type(scope) is str
            and type(payee) is str
            and type(method) is str
            and type(currency) is str
            and type(tags) is str
            and type(record) is str
            and (challenge is None or type(challenge) is str)
        ):
            raise _Unsure
        columns = [status, scope, payee, method, currency, nano, created, updated, tags, challenge]
        header = _HEADER([record_id, rev, columns])
        tail = b"," + header[1:].encode("utf-8") + b"\n" + record.encode("utf-8")
        if (log_chain, log_seq) in named:
            raise _Unsure  # two rows name one entry
        named[(log_chain, log_seq)] = (record_id, rev, tail)
        revs[record_id] = rev
        add(row)
        report.payments += 1

    # -- the entries ---------------------------------------------------------------------
    trees: dict[str, _Tree] = {}
    newest: dict[str, int] = {}
    sha256 = hashlib.sha256
    chain: str | None = None
    tree = _Tree(())
    expected = 0
    prev = b""
    opening = b""
    events = 0
    for stored_chain, seq, stored_id, entry in tx.log_rows():
        if stored_chain != chain:
            tree.flush()
            chain = stored_chain
            if chain in trees:
                raise _Unsure  # its entries are not together: the full check takes them in turn
            tree = trees[chain] = _Tree(wanted.get(chain, ()))
            expected, prev = 0, GENESIS.encode()
            opening = _FORMAT_OPEN + json.dumps(chain, ensure_ascii=False).encode("utf-8") + b","
        if seq != expected or type(entry) is not bytes:
            raise _Unsure
        prefix = opening + b'%d,"%s",' % (seq, prev)
        if not entry.startswith(prefix):
            raise _Unsure
        mine = named.pop((stored_chain, seq), None)
        if mine is not None:
            record_id, rev, tail = mine
            if (
                stored_id != record_id
                or not entry.endswith(tail)
                or not _MIDDLE.fullmatch(entry, len(prefix), len(entry) - len(tail))
            ):
                raise _Unsure
        else:
            end = entry.find(b"\n")
            fields = _DECODE(entry[:end].decode("utf-8")) if end > 0 else None
            if type(fields) is not list or len(fields) != 9:
                raise _Unsure
            record_id, rev = fields[6], fields[7]
            if record_id != stored_id or not (record_id is None or type(record_id) is str):
                raise _Unsure
            if type(rev) is not int:
                if isinstance(rev, int):  # a bool: the full check counts it as a revision
                    raise _Unsure
                record_id = None  # no revision: not a change of the record's state
        if record_id is not None:
            last = newest.get(record_id)
            if last is not None and rev <= last:
                raise _Unsure  # revisions of one record only grow along the log
            newest[record_id] = rev
        leaf = sha256(b"\x00" + entry).digest()
        prev = leaf.hex().encode()
        tree.add(leaf)
        expected += 1
        events += 1
    tree.flush()
    if named:
        raise _Unsure  # a payment names an entry that is not there
    for record_id, rev in revs.items():
        if newest.get(record_id) != rev:
            raise _Unsure  # the log holds a newer revision than the row
    if len(newest) != len(revs):
        raise _Unsure  # the log names a record that has no row (deleted)
    report.events = events

    # -- the chains against their heads --------------------------------------------------
    for name in wanted:  # a chain a checkpoint or published head names, with no entries
        if name != "legacy":
            trees.setdefault(name, _Tree(()))
    _check_heads(
        report,
        trees,
        ledger_id=ledger_id,
        trusted=trusted,
        require_signed=require_signed,
        published=published,
        heads=heads,
        checkpoints=checkpoints,
        legacy_leaves=[],
    )
    if report.problems:
        raise _Unsure

    # -- the totals against the payments -------------------------------------------------
    want = recount.rows()
    have = list(tx.total_rows())
    have.sort()
    if have != want:
        raise _Unsure
    report.totals = len(have)
    return report


class _Tree:
    """One chain's tree as its leaves arrive: hashed in batches, level by level."""

    __slots__ = ("_batch", "_wanted", "frontier", "roots")

    def __init__(self, wanted: Iterable[int]) -> None:
        self.frontier = Frontier()
        self._wanted = sorted(wanted)
        self._batch: list[bytes] = []
        #: Wanted size -> root (hex), for the sizes the chain reached.
        self.roots: dict[int, str] = {}

    def add(self, leaf: bytes) -> None:
        batch = self._batch
        batch.append(leaf)
        if len(batch) == _BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            for size, value in self.frontier.extend(self._batch, self._wanted).items():
                self.roots[size] = value.hex()
            self._batch.clear()
