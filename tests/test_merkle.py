"""RFC 6962 hashing and proofs: the transparency-dev vectors, and random trees against the RFC's own recursion."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebl.log import merkle
from ebl.log.merkle import ProofError

VECTORS = Path(__file__).parent / "vectors" / "merkle"


def _load(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(path.relative_to(VECTORS)), json.loads(path.read_text(encoding="utf-8")))
        for path in sorted((VECTORS / kind).rglob("*.json"))
    ]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


@pytest.mark.parametrize(("name", "case"), _load("inclusion"), ids=lambda v: v if isinstance(v, str) else "")
def test_inclusion_vectors(name: str, case: dict[str, Any]) -> None:
    arguments = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*arguments)
    else:
        merkle.verify_inclusion(*arguments)


@pytest.mark.parametrize(("name", "case"), _load("consistency"), ids=lambda v: v if isinstance(v, str) else "")
def test_consistency_vectors(name: str, case: dict[str, Any]) -> None:
    # Our empty-tree policy is the vectors': a consistency proof from size 0 is refused.
    arguments = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        [_b64(p) for p in case["proof"] or []],
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*arguments)
    else:
        merkle.verify_consistency(*arguments)


# -- the RFC 6962 §2.1 definitions, written as recursively as the RFC writes them -------------------------------


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


class StoredTree:
    """A tree kept the way the ledger keeps it: only the perfect subtrees that appends complete."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0
        self.fetches = 0

    def get(self, level: int, index: int) -> bytes:
        self.fetches += 1
        return self.nodes[(level, index)]

    def append(self, data: bytes) -> list[tuple[int, int, bytes]]:
        completed = merkle.completed_nodes(self.size, merkle.leaf_hash(data), self.get)
        for level, index, value in completed:
            self.nodes[(level, index)] = value
        self.size += 1
        return completed


def _tree(count: int) -> tuple[StoredTree, list[bytes]]:
    tree, leaves = StoredTree(), [f"entry {i}".encode() for i in range(count)]
    for leaf in leaves:
        tree.append(leaf)
    return tree, leaves


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 300), data=st.data())
def test_stored_tree_roots_and_proofs_match_the_rfc(count: int, data: st.DataObject) -> None:
    tree, leaves = _tree(count)
    assert merkle.root(count, tree.get) == mth(leaves)
    index = data.draw(st.integers(0, count - 1))
    proof = merkle.inclusion_proof(index, count, tree.get)
    assert proof == path(index, leaves)
    merkle.verify_inclusion(merkle.leaf_hash(leaves[index]), index, count, proof, mth(leaves))
    old = data.draw(st.integers(1, count))
    consistency = merkle.consistency_proof(old, count, tree.get)
    assert consistency == subproof(old, leaves, True)
    merkle.verify_consistency(old, count, mth(leaves[:old]), mth(leaves), consistency)


@settings(max_examples=60, deadline=None)
@given(before=st.integers(0, 130), added=st.integers(1, 70))
def test_leaves_appended_together_complete_the_subtrees_appended_one_by_one(before: int, added: int) -> None:
    # The ledger appends the leaves of a batch of writes together; the tree must be the one single appends build.
    one_by_one, leaves = _tree(before + added)
    together, _ = _tree(before)
    together.fetches = 0
    new = [merkle.leaf_hash(leaf) for leaf in leaves[before:]]
    completed = merkle.appended_nodes(before, new, together.get)
    assert {(level, index): value for level, index, value in completed} == {
        position: value for position, value in one_by_one.nodes.items() if position not in together.nodes
    }
    assert len(completed) == len(one_by_one.nodes) - len(together.nodes)
    # Only subtrees stored before the batch are read from the store: one query's worth, at most one per level.
    assert together.fetches <= (before + added).bit_length()


@settings(max_examples=60, deadline=None)
@given(count=st.integers(2, 200), data=st.data())
def test_any_flipped_bit_wrong_index_or_wrong_size_fails(count: int, data: st.DataObject) -> None:
    tree, leaves = _tree(count)
    root = mth(leaves)
    index = data.draw(st.integers(0, count - 1))
    leaf = merkle.leaf_hash(leaves[index])
    proof = merkle.inclusion_proof(index, count, tree.get)
    if proof:
        which, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
        flipped = bytearray(proof[which])
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, count, [*proof[:which], bytes(flipped), *proof[which + 1 :]], root)
    wrong_index = data.draw(st.integers(0, count - 1).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, wrong_index, count, proof, root)
    # A size whose audit path has another shape: sizes that share the shape (leaf 0 of 65 and of 66 leaves) share
    # the proof too, which is why a checkpoint signs the size together with the root.
    wrong_size = data.draw(
        st.integers(index + 1, 2 * count).filter(lambda n: len(path(index, [b""] * n)) != len(proof))
    )
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, index, wrong_size, proof, root)
    old = data.draw(st.integers(1, count - 1))
    consistency = merkle.consistency_proof(old, count, tree.get)
    with pytest.raises(ProofError):
        merkle.verify_consistency(
            old, count, mth(leaves[: old + 1]) if old + 1 < count else root[::-1], root, consistency
        )


def test_appends_and_proofs_touch_logarithmically_many_nodes() -> None:
    tree, _ = _tree(1000)
    tree.fetches = 0
    tree.append(b"one more")
    assert tree.fetches <= 10
    tree.fetches = 0
    merkle.inclusion_proof(517, 1001, tree.get)
    assert tree.fetches <= 2 * 10 * 10


def test_empty_tree_and_bad_requests() -> None:
    tree = StoredTree()
    assert merkle.root(0, tree.get) == hashlib.sha256(b"").digest()
    with pytest.raises(ProofError):
        merkle.inclusion_proof(0, 0, tree.get)
    with pytest.raises(ProofError):
        merkle.consistency_proof(0, 0, tree.get)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(b"short", 0, 1, [], b"\x00" * 32)
