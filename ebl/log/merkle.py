"""RFC 6962 / RFC 9162 Merkle trees with SHA-256: hashing, the right edge, proofs and their verification. Pure.

Storage model: a log keeps the hash of every *perfect* subtree it has completed, addressed ``(level, index)`` — the
subtree over leaves ``[index·2^level, (index+1)·2^level)``. :func:`completed_nodes` says which nodes one append
completes (one leaf plus one node per trailing 1-bit of the old size: O(log n), O(1) amortised), and every hash a
root or a proof needs is computed from O(log n) of those nodes through a ``get(level, index)`` callback
(:func:`subtree_hash`). Nothing is ever recomputed from all leaves.

Empty-tree policy: the root of the empty tree is ``SHA-256("")`` (RFC 6962 §2.1). A consistency proof *from* the
empty tree is refused (:class:`ProofError`), as transparency-dev/merkle and its test vectors do: every tree extends
the empty tree, so such a proof proves nothing. (The C2SP witness protocol's ``old 0`` needs no proof at all, and its
caller special-cases it.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]
"""``get(level, index)``: the stored hash of a perfect subtree."""


class ProofError(ValueError):
    """A proof does not verify, or the request for one makes no sense."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def entry_leaf_hash(entry_checksum: str) -> bytes:
    """The leaf of a chain entry in a node's log: its 32-byte checksum (SHA-256 of the compact JWS) is the data."""
    return leaf_hash(bytes.fromhex(entry_checksum))


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def completed_nodes(size: int, new_leaf_hash: bytes, get: NodeGetter) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees ``(level, index, hash)`` that appending leaf number ``size`` completes, leaf first."""
    nodes = [(0, size, new_leaf_hash)]
    level, index, current = 0, size, new_leaf_hash
    while index % 2 == 1:
        current = node_hash(get(level, index - 1), current)
        level, index = level + 1, index // 2
        nodes.append((level, index, current))
    return nodes


def appended_nodes(size: int, new_leaf_hashes: Sequence[bytes], get: NodeGetter) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees ``(level, index, hash)`` that appending ``new_leaf_hashes`` as leaves number ``size``,
    ``size + 1``, … completes, in the order :func:`completed_nodes` gives them leaf after leaf."""
    new: dict[tuple[int, int], bytes] = {}

    def known(level: int, index: int) -> bytes:
        found = new.get((level, index))
        return get(level, index) if found is None else found

    for offset, leaf in enumerate(new_leaf_hashes):
        for level, index, value in completed_nodes(size + offset, leaf, known):
            new[(level, index)] = value
    return [(level, index, value) for (level, index), value in new.items()]


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962 §2.1: the largest power of two with k < n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(start: int, end: int, get: NodeGetter) -> bytes:
    """MTH(D[start:end]) for ``start`` aligned as RFC 6962 recursion aligns it, from stored perfect subtrees."""
    if end <= start:
        raise ProofError(f"empty range [{start}, {end})")
    # Cover [start, end) with maximal aligned perfect subtrees, left to right, then fold them right to left (the
    # right border of an unbalanced tree is never padded).
    parts = []
    position = start
    while position < end:
        level = (position & -position).bit_length() - 1 if position else (end - position).bit_length() - 1
        while position + (1 << level) > end:
            level -= 1
        parts.append(get(level, position >> level))
        position += 1 << level
    result = parts[-1]
    for part in reversed(parts[:-1]):
        result = node_hash(part, result)
    return result


def root(size: int, get: NodeGetter) -> bytes:
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, get)


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(index, D[0:size])."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:
            proof.append(subtree_hash(start + k, end, get))
            end = start + k
        else:
            proof.append(subtree_hash(start, start + k, get))
            start, m = start + k, m - k
    return list(reversed(proof))


def consistency_proof(old_size: int, new_size: int, get: NodeGetter) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(old_size, D[0:new_size]) for 0 < old_size ≤ new_size."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    proof: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            proof.append(subtree_hash(start + k, end, get))
            end = start + k
        else:
            proof.append(subtree_hash(start, start + k, get))
            start, m, complete = start + k, m - k, False
    if not complete:
        proof.append(subtree_hash(start, end, get))
    return list(reversed(proof))


def _check_hashes(*hashes: bytes) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError(f"every hash is {HASH_SIZE} bytes")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`ProofError` unless ``proof`` shows ``leaf`` at ``index`` under ``root_hash``."""
    _check_hashes(leaf, root_hash, *proof)
    # Step 1: the index must be in the tree.
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    fn, sn, result = index, size - 1, leaf
    # Step 2: climb, hashing each proof element on the side the index bits say.
    for element in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn % 2 == 1 or fn == sn:
            result = node_hash(element, result)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, element)
        fn, sn = fn >> 1, sn >> 1
    # Step 3: the path must reach the top, at the claimed root.
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if result != root_hash:
        raise ProofError("the inclusion proof leads to another root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`ProofError` unless the tree of ``old_size`` is a prefix of ``new_size``'s."""
    _check_hashes(*proof)
    if old_size > new_size:
        raise ProofError(f"size {old_size} cannot precede size {new_size}")
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing (policy: refused)")
    if old_size == new_size:
        if proof:
            raise ProofError("trees of equal size take an empty proof")
        if old_root != new_root:
            raise ProofError("trees of equal size have different roots")
        return
    _check_hashes(old_root, new_root)
    # Step 1: a proof from a non-empty tree is never empty; a power-of-two old tree is its own first node.
    if not proof:
        raise ProofError("the consistency proof is empty")
    elements = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    # Step 2: skip the levels where the old tree is a complete left subtree.
    fn, sn = old_size - 1, new_size - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    # Step 3: rebuild both roots side by side.
    first_root = second_root = elements[0]
    for element in elements[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn % 2 == 1 or fn == sn:
            first_root = node_hash(element, first_root)
            second_root = node_hash(element, second_root)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            second_root = node_hash(second_root, element)
        fn, sn = fn >> 1, sn >> 1
    # Step 4: both roots must match and the path must reach the top.
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if first_root != old_root:
        raise ProofError("the consistency proof does not lead to the old root")
    if second_root != new_root:
        raise ProofError("the consistency proof does not lead to the new root")
