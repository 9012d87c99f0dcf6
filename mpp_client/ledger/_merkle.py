"""The Merkle tree of RFC 9162 (Certificate Transparency v2, section 2.1).

The audit log appends one record per payment event and, at each checkpoint,
signs the tree head (size and root) of the Merkle tree over all records so far.
Two kinds of proof then make the log tamper-evident without trusting whoever
stores it:

* an *inclusion proof* shows that one record is in the tree with a given signed
  root; it is ``O(log n)`` hashes, so it can be exported with the record (see
  :class:`InclusionProof`) and checked offline by anyone holding the signed head;
* a *consistency proof* shows that the tree at one checkpoint is a prefix of the
  tree at a later one, i.e. the log only grew: nothing was rewritten or removed.

We follow the RFC to the letter (rather than a home-grown variant) so that the
proofs can be checked by any RFC 6962/9162 verifier and so that the published
test vectors apply. The hash is SHA-256; leaves and interior nodes are hashed
with distinct one-byte prefixes so that a leaf can never be passed off as a node
(the second-preimage attack on naive Merkle trees).

Everything here is pure: no I/O, no clock, no state. The functions that build
trees take the *leaf hashes* (already passed through :func:`leaf_hash`), so a
log can keep them instead of re-hashing every record for each proof. Building
functions raise :class:`ValueError` on bad arguments, since that is a bug in the
caller; verifying functions return ``False`` on any malformed input and never
raise, since their input typically comes from someone else.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "InclusionProof",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: RFC 9162 defines MTH({}) as the hash of the empty string."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HEX_HASH = re.compile(r"[0-9a-fA-F]{64}")


def leaf_hash(data: bytes) -> bytes:
    """Return the hash of one leaf: SHA-256(0x00 || data) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


#: Leaves hashed together by :meth:`Frontier.extend` (a power of two).
_BLOCK = 4096


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the complete tree over ``leaves`` (a power of two of them), leaves first."""
    sha256 = hashlib.sha256
    prefix = _NODE_PREFIX
    level = list(leaves)
    levels = [level]
    while len(level) > 1:
        level = [
            sha256(prefix + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=True)
        ]
        levels.append(level)
    return levels


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (for ``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> TypeGuard[bytes]:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_hashes(values: object) -> TypeGuard[Sequence[bytes]]:
    # A bytes object is a Sequence too (of ints); it is never a valid proof.
    if not isinstance(values, Sequence) or isinstance(values, (bytes, bytearray, str)):
        return False
    return all(_is_hash(v) for v in values)


def _is_size(value: object) -> TypeGuard[int]:
    # bool is an int subclass; a JSON ``true`` is not a tree size.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_leaves(leaves: Sequence[bytes]) -> None:
    # Passing raw records instead of leaf hashes would silently build a tree no
    # verifier agrees with; the length check catches nearly every such mix-up.
    for i, leaf in enumerate(leaves):
        if not _is_hash(leaf):
            raise ValueError(
                f"leaf {i} is not a {HASH_SIZE}-byte leaf hash; pass leaf_hash(record), "
                "not the record itself"
            )


def _mth(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(leaves[start:end]) in O(end - start) time and O(1) stack depth.

    Hashes level by level, carrying an unpaired last node up unchanged. This
    gives the same tree as the RFC's recursive split at the largest power of two
    smaller than n: the left part is always a complete subtree, so pairing from
    the left never crosses the split, and the unbalanced right part is exactly
    the nodes that get carried up.
    """
    if start == end:
        return EMPTY_ROOT
    level = [leaves[i] for i in range(start, end)]
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root(leaves: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash (RFC 9162 §2.1.1) of the tree over ``leaves``.

    ``leaves`` are leaf hashes (see :func:`leaf_hash`); the empty tree's root is
    :data:`EMPTY_ROOT`. Linear time, no recursion, so it suits large logs.
    """
    _check_leaves(leaves)
    return _mth(leaves, 0, len(leaves))


class Frontier:
    """The right edge of a growing RFC 9162 tree: enough to append and to take the root.

    A tree of ``n`` leaves is, left to right, one complete subtree per set bit
    of ``n`` (largest first); the frontier keeps just their roots, so it holds
    O(log n) hashes and appending is O(1) amortized (O(log n) at worst). A log
    that keeps its frontier in memory signs a new tree head after every write
    without ever re-reading what it wrote before. The root folds the subtree
    roots from the right, which is exactly the RFC's split at the largest power
    of two (the left part of every split is one of these complete subtrees).
    """

    __slots__ = ("_nodes", "size")

    def __init__(self) -> None:
        self._nodes: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (see :func:`leaf_hash`) at the right."""
        if not _is_hash(leaf):
            raise ValueError(f"a leaf is a {HASH_SIZE}-byte leaf hash")
        node, n = leaf, self.size
        while n & 1:  # each trailing 1 bit: a complete subtree of the new node's size
            node = node_hash(self._nodes.pop(), node)
            n >>= 1
        self._nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves so far (:data:`EMPTY_ROOT` for none)."""
        if not self._nodes:
            return EMPTY_ROOT
        nodes = self._nodes
        value = nodes[-1]
        for i in range(len(nodes) - 2, -1, -1):
            value = node_hash(nodes[i], value)
        return value

    def copy(self) -> Frontier:
        other = Frontier()
        other._nodes = list(self._nodes)
        other.size = self.size
        return other

    def _push(self, node: bytes, height: int) -> None:
        """Add the root of a complete subtree of ``2**height`` leaves (``size`` aligned to it)."""
        n = self.size >> height
        while n & 1:
            node = node_hash(self._nodes.pop(), node)
            n >>= 1
        self._nodes.append(node)
        self.size += 1 << height

    def extend(self, leaves: Sequence[bytes], wanted: Sequence[int] = ()) -> dict[int, bytes]:
        """Add many leaf hashes at once; return the roots at the sizes in ``wanted`` passed.

        The same tree as :meth:`append` one by one, but hashed level by level in
        blocks of complete subtrees (tight loops, no call per leaf), so checking
        a long log costs little more than hashing its leaves. ``wanted`` is sorted.
        """
        if not all(type(leaf) is bytes and len(leaf) == HASH_SIZE for leaf in leaves):
            raise ValueError(f"a leaf is a {HASH_SIZE}-byte leaf hash")
        roots: dict[int, bytes] = {}
        start, total = 0, len(leaves)
        while start < total:
            # The largest block the tree so far is aligned to, and that fits.
            block = self.size & -self.size if self.size else _BLOCK
            block = min(block, _BLOCK)
            while block > total - start:
                block >>= 1
            levels = _levels(leaves[start : start + block])
            base = self.size
            first = bisect.bisect_right(wanted, base)
            last = bisect.bisect_left(wanted, base + block)
            for size in wanted[first:last]:  # strictly inside the block
                part = self.copy()
                offset, count = 0, size - base
                for height in range(len(levels) - 1, -1, -1):
                    if count >> height & 1:
                        part._push(levels[height][offset >> height], height)
                        offset += 1 << height
                roots[size] = part.root()
            self._push(levels[-1][0], len(levels) - 1)
            if last < len(wanted) and wanted[last] == self.size:
                roots[self.size] = self.root()
            start += block
        return roots


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path PATH(index, leaves) of RFC 9162 §2.1.3.1.

    The path lists the sibling subtree roots from the leaf up to the root; with
    the leaf hash it recomputes the root (see :func:`verify_inclusion`).
    Raises :class:`ValueError` unless ``0 <= index < len(leaves)``.
    """
    _check_leaves(leaves)
    n = len(leaves)
    if not _is_size(index) or index >= n:
        raise ValueError(f"leaf index {index!r} is outside a tree of {n} leaves")
    # The RFC recursion, unrolled from the root down: at each step keep the half
    # holding the leaf and record the other half's root. Siblings are found top
    # down but listed bottom up, hence the reversal.
    path: list[bytes] = []
    start, end = 0, n
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(_mth(leaves, start + k, end))
            end = start + k
        else:
            path.append(_mth(leaves, start, start + k))
            start += k
    path.reverse()
    return path


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree with ``root``.

    The algorithm of RFC 9162 §2.1.3.2, which walks the path using only the
    index and the tree size, so the verifier needs neither the tree nor the
    other records. Returns ``False``, never raises, on any malformed input.

    The proof binds the leaf and its position to ``root``; ``tree_size`` only
    steers the walk, so the same proof also passes under other sizes whose path
    has the same shape (index 0 of 7 or of 8 leaves). Take ``root`` and
    ``tree_size`` together from one signed tree head, as RFC 9162 intends.
    """
    if not (_is_size(index) and _is_size(tree_size) and index < tree_size):
        return False
    if not (_is_hash(leaf) and _is_hash(root)):
        return False
    if not _is_hashes(proof):
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False  # the proof is longer than this tree is deep
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the consistency proof PROOF(old_size, leaves) of RFC 9162 §2.1.4.1.

    It shows that the first ``old_size`` leaves form the tree that had the old
    root, so the old tree head is a prefix of the new one. The RFC defines it
    for ``0 < old_size < len(leaves)``; for ``old_size == len(leaves)`` the
    proof is empty (the heads must simply be equal), and for ``old_size == 0``
    it is empty too (the empty tree is a prefix of every tree).
    Raises :class:`ValueError` unless ``0 <= old_size <= len(leaves)``.
    """
    _check_leaves(leaves)
    n = len(leaves)
    if not _is_size(old_size) or old_size > n:
        raise ValueError(f"old size {old_size!r} is outside 0..{n}")
    if old_size in (0, n):
        return []
    # SUBPROOF(m, D[start:end], b), unrolled like inclusion_proof. ``whole``
    # is the RFC's b: whether the subtree we are in is still the old tree itself
    # (whose root the verifier already has, so it need not be sent).
    proof: list[bytes] = []
    start, end, m, whole = 0, n, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(_mth(leaves, start + k, end))
            end = start + k
        else:
            proof.append(_mth(leaves, start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        proof.append(_mth(leaves, start, end))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check that the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    The algorithm of RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. Equal
    sizes are consistent only with an empty proof and equal roots; size 0 only
    with an empty proof and the empty tree's root. Returns ``False``, never
    raises, on any malformed input. As with :func:`verify_inclusion`, the sizes
    only steer the walk: each (size, root) pair must come from a signed head.
    """
    if not (_is_size(old_size) and _is_size(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not _is_hashes(proof):
        return False
    path = list(proof)
    if old_size == 0:
        return not path and hmac.compare_digest(old_root, EMPTY_ROOT)
    if old_size == new_size:
        return not path and hmac.compare_digest(old_root, new_root)
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        # The old tree is a complete subtree of the new one, so the proof
        # leaves out its root; the verifier supplies it.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


def _hash_from_hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise ValueError(f"{what} must be {2 * HASH_SIZE} hex digits, got {value!r}")
    return bytes.fromhex(value)


def _size_from(value: object, what: str) -> int:
    if not _is_size(value):
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


@dataclass(frozen=True)
class InclusionProof:
    """A self-contained proof that one record is in a log with a given root.

    Exported next to a record (and the signed checkpoint carrying ``root`` and
    ``tree_size``), it lets anyone confirm offline that the record was logged,
    at that position, without access to the log. ``leaf_hash`` is the record's
    :func:`leaf_hash`; the verifier recomputes it from the record it holds and
    compares. ``path`` is a tuple so the proof stays immutable (a list, as
    :func:`inclusion_proof` returns, is converted on construction).

    Verifying proves inclusion under ``root`` only: the caller must still check
    that ``root`` and ``tree_size`` are those of a checkpoint it trusts (e.g.
    one whose signature it verified).
    """

    index: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    root: bytes

    def __post_init__(self) -> None:
        # Accept a list (as returned by inclusion_proof) but keep a tuple.
        object.__setattr__(self, "path", tuple(self.path))

    @classmethod
    def build(cls, leaves: Sequence[bytes], index: int) -> InclusionProof:
        """Make the proof for ``leaves[index]`` in the tree over all ``leaves``."""
        path = inclusion_proof(leaves, index)  # validates leaves and index
        return cls(index, len(leaves), leaves[index], tuple(path), root(leaves))

    def verify(self) -> bool:
        """Whether the path really takes ``leaf_hash`` at ``index`` to ``root``. Never raises."""
        return verify_inclusion(self.leaf_hash, self.index, self.tree_size, self.path, self.root)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: sizes as integers, hashes as lowercase hex."""
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "path": [p.hex() for p in self.path],
            "root": self.root.hex(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InclusionProof:
        """Parse :meth:`to_dict` output, e.g. from JSON; extra keys are ignored.

        Raises :class:`ValueError` if a key is missing or a value has the wrong
        shape. A well-formed but wrong proof parses fine and fails :meth:`verify`.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"an inclusion proof must be a mapping, got {type(data).__name__}")
        missing = {"index", "tree_size", "leaf_hash", "path", "root"} - data.keys()
        if missing:
            raise ValueError(f"inclusion proof is missing {sorted(missing)}")
        path = data["path"]
        if not isinstance(path, list):
            raise ValueError(f"path must be a list of hex hashes, got {path!r}")
        return cls(
            index=_size_from(data["index"], "index"),
            tree_size=_size_from(data["tree_size"], "tree_size"),
            leaf_hash=_hash_from_hex(data["leaf_hash"], "leaf_hash"),
            path=tuple(_hash_from_hex(p, f"path[{i}]") for i, p in enumerate(path)),
            root=_hash_from_hex(data["root"], "root"),
        )
