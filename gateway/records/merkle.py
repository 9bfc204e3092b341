"""Merkle trees that OpenZeppelin's ``MerkleProof`` verifies.

Leaf encoding (OpenZeppelin StandardMerkleTree for one ``bytes32`` value): the leaf of a
record id is ``keccak256(keccak256(abi.encode(id)))``; ``abi.encode`` of a bytes32 is the 32
bytes themselves. Pairs are hashed sorted (``keccak256(min || max)``), so a proof is just the
list of siblings from the leaf up. Leaves are sorted before the tree is built (as
StandardMerkleTree does); an odd node at the end of a level moves up unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_hash.auto import keccak


def leaf_of(record_id: bytes) -> bytes:
    if len(record_id) != 32:
        raise ValueError("a record id is 32 bytes")
    return keccak(keccak(record_id))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True, slots=True)
class MerkleTree:
    leaves: list[bytes]  # sorted
    levels: list[list[bytes]]  # levels[0] = leaves, levels[-1] = [root]

    @classmethod
    def build(cls, record_ids: list[bytes]) -> MerkleTree:
        if not record_ids:
            raise ValueError("an empty batch has no tree")
        leaves = sorted(leaf_of(record_id) for record_id in record_ids)
        levels = [leaves]
        while len(levels[-1]) > 1:
            level = levels[-1]
            parents = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                parents.append(level[-1])
            levels.append(parents)
        return cls(leaves, levels)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, leaf: bytes) -> list[bytes]:
        index = self._index(leaf)
        siblings = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                siblings.append(level[sibling])
            index //= 2
        return siblings

    def _index(self, leaf: bytes) -> int:
        # leaves are sorted: binary search
        low, high = 0, len(self.leaves)
        while low < high:
            middle = (low + high) // 2
            if self.leaves[middle] < leaf:
                low = middle + 1
            else:
                high = middle
        if low == len(self.leaves) or self.leaves[low] != leaf:
            raise KeyError("leaf not in tree")
        return low


def verify(root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
    """What ``MerkleProof.verify(proof, root, leaf)`` computes, in Python."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root
