// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";

/// @notice The gateway's trusted forwarder for gasless requests: OpenZeppelin 5's
/// ERC2771Forwarder as it is, under the EIP-712 domain ("Gateway Forwarder", "1").
/// Requests are ForwardRequest(address from,address to,uint256 value,uint256 gas,
/// uint256 nonce,uint48 deadline,bytes data), signed by `from`; `nonces(from)` is next.
contract GatewayForwarder is ERC2771Forwarder {
    constructor() ERC2771Forwarder("Gateway Forwarder") {}
}
