// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";

/// @notice An example target for gasless requests (dev and tests): it records who signed,
/// as `_msgSender()` sees it: the request's signer when called through the trusted
/// forwarder, the caller otherwise.
contract Guestbook is ERC2771Context {
    mapping(address => uint256) public entries;
    mapping(address => string) public lastNote;

    event Signed(address indexed author, string note, uint256 count);

    error EmptyNote();

    constructor(address trustedForwarder) ERC2771Context(trustedForwarder) {}

    function sign(string calldata note) external {
        if (bytes(note).length == 0) revert EmptyNote();
        address author = _msgSender();
        uint256 count = ++entries[author];
        lastNote[author] = note;
        emit Signed(author, note, count);
    }
}
