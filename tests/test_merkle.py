"""The RFC 9162 Merkle tree: known answers, proofs, tampering, the exported proof.

The expected values come from a reference implementation written in this file
straight from the RFC's recursive definitions (over the raw entries, slicing
lists, no cleverness), and from the RFC 6962 / certificate-transparency test
vectors, which that reference reproduces. The module under test is iterative,
so agreement between the two is meaningful.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_client.ledger._merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------------------
# Reference implementation, RFC 9162 §2.1, written as literally as possible.
# ---------------------------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over the raw entries D (§2.1.1)."""
    n = len(d)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + d[0])
    k = _k(n)
    return _sha256(b"\x01" + ref_mth(d[0:k]) + ref_mth(d[k:n]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (§2.1.3.1)."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[0:k]), ref_mth(d[k:n])]
    return [*ref_path(m - k, d[k:n]), ref_mth(d[0:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (§2.1.4.1)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[0:k], b), ref_mth(d[k:n])]
    return [*ref_subproof(m - k, d[k:n], False), ref_mth(d[0:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (§2.1.4.1)."""
    return ref_subproof(m, d, True)


def _h(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


def ref_verify_inclusion(
    leaf: bytes, m: int, n: int, path: Sequence[bytes], root_hash: bytes
) -> bool:
    """An independent verifier: undo PATH's recursion, consuming the path from its end."""
    if not 0 <= m < n:
        return False

    def climb(m: int, n: int, path: list[bytes]) -> bytes | None:
        if n == 1:
            return leaf if not path else None
        if not path:
            return None
        k = _k(n)
        sibling, rest = path[-1], path[:-1]
        if m < k:
            below = climb(m, k, rest)
            return None if below is None else _h(below, sibling)
        below = climb(m - k, n - k, rest)
        return None if below is None else _h(sibling, below)

    return climb(m, n, list(path)) == root_hash


def ref_verify_consistency(m: int, n: int, old: bytes, new: bytes, proof: Sequence[bytes]) -> bool:
    """An independent verifier: undo SUBPROOF's recursion to rebuild both roots."""
    if m == 0:
        return not proof and old == _sha256(b"")
    if m == n:
        return not proof and old == new
    if not 0 < m < n:
        return False

    def rebuild(m: int, n: int, proof: list[bytes], b: bool) -> tuple[bytes, bytes] | None:
        # Returns (MTH of the first m leaves, MTH of all n) of this subtree.
        if m == n:
            if b:
                return (old, old) if not proof else None
            return (proof[0], proof[0]) if len(proof) == 1 else None
        if not proof:
            return None
        k = _k(n)
        last, rest = proof[-1], proof[:-1]
        if m <= k:
            got = rebuild(m, k, rest, b)
            return None if got is None else (got[0], _h(got[1], last))
        got = rebuild(m - k, n - k, rest, False)
        return None if got is None else (_h(last, got[0]), _h(last, got[1]))

    got = rebuild(m, n, list(proof), True)
    return got == (old, new)


def hashes(data: Sequence[bytes]) -> list[bytes]:
    return [leaf_hash(x) for x in data]


def flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1 :]


# ---------------------------------------------------------------------------
# Hashing primitives and known answers
# ---------------------------------------------------------------------------


def test_leaf_and_node_hash_use_domain_separation() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    # A node can't be passed off as a leaf over the concatenation of its children.
    assert leaf_hash(a + b) != node_hash(a, b)


def test_empty_tree() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert len(EMPTY_ROOT) == HASH_SIZE


@pytest.mark.parametrize("n", range(71))
def test_root_matches_reference(n: int) -> None:
    data = [f"record-{i}".encode() for i in range(n)]
    assert root(hashes(data)) == ref_mth(data)


def test_root_by_hand_for_tiny_trees() -> None:
    # Spelled out, not via the reference: n=3 splits 2+1, n=5 splits 4+1, n=6 4+2, n=7 4+3.
    a, b, c, d, e, f, g = (leaf_hash(bytes([i])) for i in range(7))
    assert root([a]) == a
    assert root([a, b]) == node_hash(a, b)
    assert root([a, b, c]) == node_hash(node_hash(a, b), c)
    ab_cd = node_hash(node_hash(a, b), node_hash(c, d))
    assert root([a, b, c, d]) == ab_cd
    assert root([a, b, c, d, e]) == node_hash(ab_cd, e)
    assert root([a, b, c, d, e, f]) == node_hash(ab_cd, node_hash(e, f))
    assert root([a, b, c, d, e, f, g]) == node_hash(ab_cd, node_hash(node_hash(e, f), g))


# RFC 6962 / certificate-transparency reference test vectors (also used by
# Trillian and transparency-dev). Each is checked against the reference above too.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
_H_LEAF1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"  # leaf_hash(D[1])
_H_LEAF4 = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"  # leaf_hash(D[4])
_H_2_4 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"  # MTH(D[2:4])
_H_4_6 = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"  # MTH(D[4:6])
_H_6_8 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"  # MTH(D[6:8])
_H_4_8 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"  # MTH(D[4:8])
CT_INCLUSION = [  # (index, tree size, path)
    (0, 8, [_H_LEAF1, _H_2_4, _H_4_8]),
    (5, 8, [_H_LEAF4, _H_6_8, CT_ROOTS[4]]),
    (2, 3, [CT_ROOTS[2]]),
    (1, 5, [CT_ROOTS[1], _H_2_4, _H_LEAF4]),
]
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, [_H_LEAF1, _H_2_4, _H_4_8]),
    (6, 8, [_H_4_6, _H_6_8, CT_ROOTS[4]]),
    (2, 5, [_H_2_4, _H_LEAF4]),
]


@pytest.mark.parametrize("n", range(len(CT_ROOTS)))
def test_ct_vector_roots(n: int) -> None:
    expected = bytes.fromhex(CT_ROOTS[n])
    assert ref_mth(CT_LEAVES[:n]) == expected  # the vector agrees with our reading of the RFC
    assert root(hashes(CT_LEAVES[:n])) == expected


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_ct_vector_inclusion(index: int, size: int, path: list[str]) -> None:
    expected = [bytes.fromhex(p) for p in path]
    assert ref_path(index, CT_LEAVES[:size]) == expected
    leaves = hashes(CT_LEAVES[:size])
    assert inclusion_proof(leaves, index) == expected
    assert verify_inclusion(
        leaf_hash(CT_LEAVES[index]), index, size, expected, bytes.fromhex(CT_ROOTS[size])
    )


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_ct_vector_consistency(old: int, new: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(p) for p in proof]
    assert ref_proof(old, CT_LEAVES[:new]) == expected
    assert consistency_proof(hashes(CT_LEAVES[:new]), old) == expected
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, expected)


# ---------------------------------------------------------------------------
# Proofs against the reference, exhaustively for small trees
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 41))
def test_proofs_match_reference(n: int) -> None:
    data = [f"entry {i}".encode() for i in range(n)]
    leaves = hashes(data)
    r = root(leaves)
    for i in range(n):
        path = inclusion_proof(leaves, i)
        assert path == ref_path(i, data)
        assert verify_inclusion(leaves[i], i, n, path, r)
        assert ref_verify_inclusion(leaves[i], i, n, path, r)
    for m in range(1, n + 1):
        proof = consistency_proof(leaves, m)
        assert proof == ref_proof(m, data)
        assert verify_consistency(m, n, root(leaves[:m]), r, proof)
        assert ref_verify_consistency(m, n, root(leaves[:m]), r, proof)


@pytest.mark.parametrize("n", range(1, 18))
def test_every_byte_flip_breaks_inclusion(n: int) -> None:
    leaves = hashes([bytes([i, 7]) for i in range(n)])
    r = root(leaves)
    for i in range(n):
        path = inclusion_proof(leaves, i)
        for pos in range(HASH_SIZE):
            assert not verify_inclusion(flip(leaves[i], pos), i, n, path, r)
            assert not verify_inclusion(leaves[i], i, n, path, flip(r, pos))
            for j in range(len(path)):
                bad = [*path[:j], flip(path[j], pos), *path[j + 1 :]]
                assert not verify_inclusion(leaves[i], i, n, bad, r)


@pytest.mark.parametrize("n", range(1, 18))
def test_every_byte_flip_breaks_consistency(n: int) -> None:
    leaves = hashes([bytes([i, 9]) for i in range(n)])
    new = root(leaves)
    for m in range(1, n + 1):
        old = root(leaves[:m])
        proof = consistency_proof(leaves, m)
        for pos in range(HASH_SIZE):
            assert not verify_consistency(m, n, flip(old, pos), new, proof)
            assert not verify_consistency(m, n, old, flip(new, pos), proof)
            for j in range(len(proof)):
                bad = [*proof[:j], flip(proof[j], pos), *proof[j + 1 :]]
                assert not verify_consistency(m, n, old, new, bad)


# ---------------------------------------------------------------------------
# Property tests on random logs
# ---------------------------------------------------------------------------

# Distinct entries: with duplicates, "the same leaf at another index" can be true.
_entries = st.lists(st.binary(max_size=24), min_size=1, max_size=200, unique=True)


@settings(max_examples=40, deadline=None)
@given(
    data=_entries,
    extra=st.lists(st.binary(min_size=25, max_size=30), max_size=5, unique=True),
    rnd=st.randoms(use_true_random=False),
)
def test_inclusion_random(data: list[bytes], extra: list[bytes], rnd: random.Random) -> None:
    n = len(data)
    leaves = hashes(data)
    longer = leaves + hashes(extra)  # extra entries are longer, so never duplicates
    r = root(leaves)
    assert r == ref_mth(data)
    for i in range(n):
        path = inclusion_proof(leaves, i)
        leaf = leaves[i]
        assert verify_inclusion(leaf, i, n, path, r)

        # Any flipped byte, anywhere, breaks it.
        assert not verify_inclusion(flip(leaf, rnd.randrange(HASH_SIZE)), i, n, path, r)
        assert not verify_inclusion(leaf, i, n, path, flip(r, rnd.randrange(HASH_SIZE)))
        for j in range(len(path)):
            bad = [*path[:j], flip(path[j], rnd.randrange(HASH_SIZE)), *path[j + 1 :]]
            assert not verify_inclusion(leaf, i, n, bad, r)
        # So does a path with an element dropped, added or swapped.
        if path:
            assert not verify_inclusion(leaf, i, n, path[:-1], r)
            assert not verify_inclusion(leaf, i, n, path[1:], r)
        assert not verify_inclusion(leaf, i, n, [*path, r], r)
        assert not verify_inclusion(leaf, i, n, [leaf, *path], r)
        if len(path) >= 2 and path[0] != path[1]:
            assert not verify_inclusion(leaf, i, n, [path[1], path[0], *path[2:]], r)

        # Another index never verifies.
        for other in {i - 1, i + 1, rnd.randrange(n + 2), 2 * i + 1} - {i}:
            assert not verify_inclusion(leaf, other, n, path, r)

        # Another tree size, with the same root: the proof alone does not pin the
        # size (a leftmost leaf has the same path in trees of 7 and 8 leaves), which
        # is why size and root both come from the signed tree head. The result must
        # match the reference verifier exactly.
        for size in {n - 1, n + 1, 2 * n, rnd.randrange(1, 2 * n + 2)} - {n}:
            got = verify_inclusion(leaf, i, size, path, r)
            assert got == ref_verify_inclusion(leaf, i, size, path, r)
        # With the true root of that other size, it verifies exactly when it is
        # that tree's own proof.
        for size in {n - 1, n + len(extra)} - {n}:
            if i < size:
                truth = inclusion_proof(longer[:size], i) == path
                assert verify_inclusion(leaf, i, size, path, root(longer[:size])) == truth


@settings(max_examples=40, deadline=None)
@given(data=_entries, rnd=st.randoms(use_true_random=False))
def test_consistency_random(data: list[bytes], rnd: random.Random) -> None:
    n = len(data)
    leaves = hashes(data)
    new = root(leaves)
    roots = [root(leaves[:m]) for m in range(n + 1)]
    for m in range(1, n + 1):
        old = roots[m]
        proof = consistency_proof(leaves, m)
        assert verify_consistency(m, n, old, new, proof)

        assert not verify_consistency(m, n, flip(old, rnd.randrange(HASH_SIZE)), new, proof)
        assert not verify_consistency(m, n, old, flip(new, rnd.randrange(HASH_SIZE)), proof)
        for j in range(len(proof)):
            bad = [*proof[:j], flip(proof[j], rnd.randrange(HASH_SIZE)), *proof[j + 1 :]]
            assert not verify_consistency(m, n, old, new, bad)
        if proof:
            assert not verify_consistency(m, n, old, new, proof[:-1])
            assert not verify_consistency(m, n, old, new, proof[1:])
        assert not verify_consistency(m, n, old, new, [*proof, new])
        # The roots the wrong way round (a log that shrank) are rejected.
        if m < n:
            assert not verify_consistency(m, n, new, old, proof)
            assert not verify_consistency(n, m, new, old, proof)

        # Other sizes with these roots: as for inclusion the proof does not pin
        # the sizes, so agree with the reference verifier; with those sizes' true
        # roots, it verifies exactly when it is their own proof.
        others = {(m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1)}
        others.add((rnd.randrange(n + 1), rnd.randrange(n + 1)))
        for m2, n2 in sorted(others - {(m, n)}):
            if not (0 <= m2 and 0 <= n2):
                continue
            got = verify_consistency(m2, n2, old, new, proof)
            assert got == ref_verify_consistency(m2, n2, old, new, proof)
            if m2 <= n2 <= n:
                truth = consistency_proof(leaves[:n2], m2) == proof
                assert verify_consistency(m2, n2, roots[m2], roots[n2], proof) == truth


@settings(max_examples=30, deadline=None)
@given(data=_entries, rnd=st.randoms(use_true_random=False))
def test_inclusion_proof_json_roundtrip(data: list[bytes], rnd: random.Random) -> None:
    leaves = hashes(data)
    proof = InclusionProof.build(leaves, rnd.randrange(len(leaves)))
    assert proof.verify()
    exported = json.dumps(proof.to_dict())
    again = InclusionProof.from_dict(json.loads(exported))
    assert again == proof
    assert again.verify()


# ---------------------------------------------------------------------------
# Edge cases and malformed input
# ---------------------------------------------------------------------------


def test_single_leaf_tree() -> None:
    leaf = leaf_hash(b"only")
    assert root([leaf]) == leaf
    assert inclusion_proof([leaf], 0) == []
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 2, [], leaf)
    assert consistency_proof([leaf], 1) == []
    assert verify_consistency(1, 1, leaf, leaf, [])


def test_consistency_from_the_empty_tree() -> None:
    leaves = hashes([b"a", b"b", b"c"])
    assert consistency_proof(leaves, 0) == []
    assert consistency_proof([], 0) == []
    assert verify_consistency(0, 3, EMPTY_ROOT, root(leaves), [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 3, root(leaves), root(leaves), [])
    assert not verify_consistency(0, 3, EMPTY_ROOT, root(leaves), [leaves[0]])


def test_equal_sizes_need_equal_roots_and_no_proof() -> None:
    leaves = hashes([b"a", b"b", b"c"])
    r = root(leaves)
    assert verify_consistency(3, 3, r, r, [])
    assert not verify_consistency(3, 3, r, root(leaves[:2]), [])
    assert not verify_consistency(3, 3, r, r, [leaves[0]])


def test_builders_reject_bad_arguments() -> None:
    leaves = hashes([b"a", b"b", b"c"])
    for index in (-1, 3, 10):
        with pytest.raises(ValueError, match="outside"):
            inclusion_proof(leaves, index)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof([], 0)
    for old in (-1, 4):
        with pytest.raises(ValueError, match="outside"):
            consistency_proof(leaves, old)
    # Raw records instead of leaf hashes are a caller bug worth catching early.
    for fn in (root, lambda x: inclusion_proof(x, 0), lambda x: consistency_proof(x, 1)):
        with pytest.raises(ValueError, match="leaf hash"):
            fn([b"a raw record, not a hash"])


def test_verifiers_never_raise_on_malformed_input() -> None:
    leaves = hashes([b"a", b"b", b"c", b"d", b"e"])
    r = root(leaves)
    path = inclusion_proof(leaves, 2)
    leaf = leaves[2]
    assert verify_inclusion(leaf, 2, 5, path, r)
    bad_calls: list[tuple[object, ...]] = [
        (leaf, 5, 5, path, r),  # index == size
        (leaf, 7, 5, path, r),
        (leaf, -1, 5, path, r),
        (leaf, 2, 0, [], r),
        (leaf, 2, -5, path, r),
        (leaf, True, 5, path, r),
        (leaf, 2.0, 5, path, r),
        (leaf, "2", 5, path, r),
        (leaf, 2, None, path, r),
        (leaf[:31], 2, 5, path, r),
        (leaf + b"\x00", 2, 5, path, r),
        (leaf.hex(), 2, 5, path, r),
        (bytearray(leaf), 2, 5, path, r),
        (leaf, 2, 5, path, r[:16]),
        (leaf, 2, 5, path, None),
        (leaf, 2, 5, [*path[:-1], path[-1][:31]], r),
        (leaf, 2, 5, [p.hex() for p in path], r),
        (leaf, 2, 5, None, r),
        (leaf, 2, 5, b"".join(path), r),
        (leaf, 2, 5, "nonsense", r),
        (leaf, 2, 5, [None], r),
        (leaf, 2, 5, 42, r),
        (leaf, 2, 5, path * 2, r),  # wrong length
        (leaf, 2, 5, [], r),
        (leaf, 2, 2**200, path, r),  # absurd size
    ]
    for args in bad_calls:
        assert verify_inclusion(*args) is False, args  # type: ignore[arg-type]

    old = root(leaves[:3])
    proof = consistency_proof(leaves, 3)
    assert verify_consistency(3, 5, old, r, proof)
    bad_consistency: list[tuple[object, ...]] = [
        (5, 3, old, r, proof),
        (-1, 5, old, r, proof),
        (3, 5, old, r, []),
        (3, 5, old, r, None),
        (3, 5, old, r, b"".join(proof)),
        (3, 5, old, r, [None, *proof]),
        (3, 5, old[:31], r, proof),
        (3, 5, old, r.hex(), proof),
        (3, 5, old, r, [*proof, *proof]),
        (True, 5, old, r, proof),
        (3, "5", old, r, proof),
        (3, 2**200, old, r, proof),
    ]
    for args in bad_consistency:
        assert verify_consistency(*args) is False, args  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# The exported proof
# ---------------------------------------------------------------------------


def _sample_proof() -> tuple[list[bytes], InclusionProof]:
    leaves = hashes([f"payment {i}".encode() for i in range(11)])
    return leaves, InclusionProof.build(leaves, 6)


def test_inclusion_proof_build_and_dict() -> None:
    leaves, proof = _sample_proof()
    assert proof.index == 6
    assert proof.tree_size == 11
    assert proof.leaf_hash == leaves[6]
    assert proof.root == root(leaves)
    assert proof.path == tuple(inclusion_proof(leaves, 6))
    assert proof.verify()

    d = proof.to_dict()
    assert set(d) == {"index", "tree_size", "leaf_hash", "path", "root"}
    assert d["index"] == 6
    assert d["tree_size"] == 11
    for value in [d["leaf_hash"], d["root"], *d["path"]]:
        assert isinstance(value, str)
        assert len(value) == 64
        assert value == value.lower()
    assert InclusionProof.from_dict(d) == proof
    # A list path is accepted and stored as a tuple; the proof is hashable.
    listed = InclusionProof(6, 11, leaves[6], list(proof.path), proof.root)  # type: ignore[arg-type]
    assert listed == proof
    assert hash(listed) == hash(proof)


def test_inclusion_proof_from_dict_accepts_upper_case_and_extra_keys() -> None:
    _, proof = _sample_proof()
    d = proof.to_dict()
    upper = {**d, "root": d["root"].upper(), "leaf_hash": d["leaf_hash"].upper(), "note": "x"}
    assert InclusionProof.from_dict(upper) == proof


@pytest.mark.parametrize(
    "change",
    [
        {"index": 7},
        {"index": 11},
        {"tree_size": 6},
        {"tree_size": 7},
        {"tree_size": 17},
        {"leaf_hash": "00" * 32},
        {"root": "11" * 32},
        {"path": []},
    ],
)
def test_tampered_export_parses_but_fails(change: dict[str, object]) -> None:
    _, proof = _sample_proof()
    tampered = InclusionProof.from_dict({**proof.to_dict(), **change})
    assert not tampered.verify()


def test_tree_size_is_not_bound_by_the_proof() -> None:
    # Index 6 sits at the same place on the same-shaped path in every tree of 9..16
    # leaves, so the proof still checks out under those sizes with the same root.
    # That is RFC 9162 behaviour, not a bug: root and size must be taken together
    # from a signed tree head, and no honest head pairs this root with another size.
    _, proof = _sample_proof()
    for size in range(9, 17):
        claimed = InclusionProof(proof.index, size, proof.leaf_hash, proof.path, proof.root)
        assert claimed.verify()
    for size in (*range(7, 9), *range(17, 40)):
        claimed = InclusionProof(proof.index, size, proof.leaf_hash, proof.path, proof.root)
        assert not claimed.verify()


def test_tampered_path_element_fails() -> None:
    _, proof = _sample_proof()
    d = proof.to_dict()
    for j, element in enumerate(d["path"]):
        changed = ("0" if element[0] != "0" else "1") + element[1:]
        path = [*d["path"][:j], changed, *d["path"][j + 1 :]]
        assert not InclusionProof.from_dict({**d, "path": path}).verify()


@pytest.mark.parametrize(
    "change",
    [
        {"index": -1},
        {"index": True},
        {"index": "6"},
        {"index": 6.0},
        {"tree_size": None},
        {"leaf_hash": "ab"},
        {"leaf_hash": "zz" * 32},
        {"leaf_hash": " " + "00" * 31 + "0"},
        {"root": 5},
        {"root": b"\x00" * 32},
        {"path": "00" * 32},
        {"path": ["00" * 31]},
        {"path": [None]},
        {"path": None},
    ],
)
def test_malformed_export_is_rejected(change: dict[str, object]) -> None:
    _, proof = _sample_proof()
    with pytest.raises(ValueError):
        InclusionProof.from_dict({**proof.to_dict(), **change})


def test_malformed_export_missing_keys_or_not_a_mapping() -> None:
    _, proof = _sample_proof()
    d = proof.to_dict()
    del d["root"]
    with pytest.raises(ValueError, match="missing"):
        InclusionProof.from_dict(d)
    with pytest.raises(ValueError, match="mapping"):
        InclusionProof.from_dict([1, 2])  # type: ignore[arg-type]


def test_inclusion_proof_with_malformed_fields_does_not_raise_on_verify() -> None:
    _, proof = _sample_proof()
    assert not InclusionProof(
        proof.index, proof.tree_size, b"short", proof.path, proof.root
    ).verify()
    assert not InclusionProof(99, proof.tree_size, proof.leaf_hash, proof.path, proof.root).verify()


# ---------------------------------------------------------------------------
# Scale
# ---------------------------------------------------------------------------


def test_large_tree() -> None:
    n = 100_000
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    r = root(leaves)
    assert len(r) == HASH_SIZE
    # Cross-check the big root through proofs rather than the (slow) reference.
    assert len(inclusion_proof(leaves, 0)) == 17  # ceil(log2(100_000))
    for index in (0, 12_345, 65_536, n - 1):
        path = inclusion_proof(leaves, index)
        assert verify_inclusion(leaves[index], index, n, path, r)
    old = 70_001
    proof = consistency_proof(leaves, old)
    assert verify_consistency(old, n, root(leaves[:old]), r, proof)
