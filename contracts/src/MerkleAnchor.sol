// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title Merkle roots of signed-record batches, anchored by the gateway.
/// @notice Leaves are `keccak256(bytes.concat(keccak256(abi.encode(recordId))))` (OpenZeppelin
/// StandardMerkleTree leaf encoding for one bytes32 value), pairs are hashed sorted.
contract MerkleAnchor is Ownable {
    struct Anchor {
        uint64 blockNumber;
        uint64 timestamp;
        uint128 count;
    }

    mapping(bytes32 root => Anchor) public anchors;

    event Anchored(bytes32 indexed root, uint256 count, uint256 timestamp);

    error AlreadyAnchored(bytes32 root);
    error EmptyBatch();

    constructor(address anchorer) Ownable(anchorer) {}

    /// @notice Record `root` of a batch of `count` records. A root is anchored once.
    function anchor(bytes32 root, uint256 count) external onlyOwner {
        if (count == 0) revert EmptyBatch();
        if (anchors[root].blockNumber != 0) revert AlreadyAnchored(root);
        anchors[root] = Anchor(uint64(block.number), uint64(block.timestamp), uint128(count));
        emit Anchored(root, count, block.timestamp);
    }

    /// @notice True when `root` is anchored and `proof` shows `leaf` is in its tree.
    function verify(bytes32 root, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        return anchors[root].blockNumber != 0 && MerkleProof.verifyCalldata(proof, root, leaf);
    }
}
