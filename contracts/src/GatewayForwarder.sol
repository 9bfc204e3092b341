// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @notice The gateway's trusted forwarder for gasless requests: OpenZeppelin 5's
/// ERC2771Forwarder under the EIP-712 domain ("Gateway Forwarder", "1"). Requests are
/// ForwardRequest(address from,address to,uint256 value,uint256 gas,uint256 nonce,
/// uint48 deadline,bytes data), signed by `from`; `nonces(from)` is the next one.
///
/// One extension: OpenZeppelin's forwarder recovers the signer with ECDSA only, so a
/// contract wallet (Safe, a smart account) could never be `from`. Here a request whose
/// signature does not recover to `from` is also valid when `from` is a contract that
/// accepts it by EIP-1271 (`isValidSignature`), as SignatureChecker decides.
contract GatewayForwarder is ERC2771Forwarder {
    constructor() ERC2771Forwarder("Gateway Forwarder") {}

    function _recoverForwardRequestSigner(
        ForwardRequestData calldata request
    ) internal view virtual override returns (bool isValid, address signer) {
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    FORWARD_REQUEST_TYPEHASH,
                    request.from,
                    request.to,
                    request.value,
                    request.gas,
                    nonces(request.from),
                    request.deadline,
                    keccak256(request.data)
                )
            )
        );
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecoverCalldata(digest, request.signature);
        if (err == ECDSA.RecoverError.NoError && recovered == request.from) {
            return (true, recovered);
        }
        if (
            request.from.code.length > 0 &&
            SignatureChecker.isValidERC1271SignatureNow(request.from, digest, request.signature)
        ) {
            return (true, request.from);
        }
        return (err == ECDSA.RecoverError.NoError, recovered);
    }
}
