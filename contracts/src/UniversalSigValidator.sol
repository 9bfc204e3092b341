// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev EIP-1271: a contract account's signature check.
interface IERC1271Wallet {
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4);
}

error ERC1271Revert(bytes reason);
error ERC6492DeployFailed(bytes reason);
error InvalidSignatureLength(uint256 length);
error InvalidSignatureV(uint8 v);

/// @title Signature validation for EOAs, deployed (EIP-1271) and counterfactual (EIP-6492) wallets.
/// @notice Written after the reference semantics of EIP-6492: a signature that ends with the
/// detection suffix is `abi.encode(factory, factoryCalldata, innerSignature) ++ suffix`; when
/// the signer has no code yet, the factory call deploys it before the EIP-1271 check.
contract UniversalSigValidator {
    bytes32 private constant ERC6492_DETECTION_SUFFIX =
        0x6492649264926492649264926492649264926492649264926492649264926492;
    bytes4 private constant ERC1271_SUCCESS = 0x1626ba7e;

    function isValidSigImpl(address signer, bytes32 hash, bytes calldata signature, bool allowSideEffects)
        public
        returns (bool)
    {
        uint256 length = signature.length;
        bool counterfactual = length >= 32 && bytes32(signature[length - 32:length]) == ERC6492_DETECTION_SUFFIX;
        bytes memory toValidate;
        if (counterfactual) {
            address factory;
            bytes memory factoryCalldata;
            (factory, factoryCalldata, toValidate) = abi.decode(signature[0:length - 32], (address, bytes, bytes));
            if (signer.code.length == 0) {
                (bool deployed, bytes memory reason) = factory.call(factoryCalldata);
                if (!deployed) revert ERC6492DeployFailed(reason);
            }
        } else {
            toValidate = signature;
        }

        if (counterfactual || signer.code.length > 0) {
            try IERC1271Wallet(signer).isValidSignature(hash, toValidate) returns (bytes4 magic) {
                bool valid = magic == ERC1271_SUCCESS;
                if (counterfactual && !allowSideEffects) {
                    // Undo the deployment: revert with the verdict as a single byte.
                    assembly {
                        mstore(0, valid)
                        revert(31, 1)
                    }
                }
                return valid;
            } catch (bytes memory reason) {
                revert ERC1271Revert(reason);
            }
        }

        if (length != 65) revert InvalidSignatureLength(length);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        return ecrecover(hash, v, r, s) == signer;
    }

    function isValidSigWithSideEffects(address signer, bytes32 hash, bytes calldata signature)
        external
        returns (bool)
    {
        return isValidSigImpl(signer, hash, signature, true);
    }

    function isValidSig(address signer, bytes32 hash, bytes calldata signature) external returns (bool) {
        try this.isValidSigImpl(signer, hash, signature, false) returns (bool valid) {
            return valid;
        } catch (bytes memory reason) {
            if (reason.length == 1) return reason[0] == 0x01;
            assembly {
                revert(add(reason, 0x20), mload(reason))
            }
        }
    }
}

/// @notice Deployless validation: `eth_call` with no `to` and this contract's creation code plus
/// `abi.encode(signer, hash, signature)` as data returns one byte, 0x01 valid or 0x00 invalid.
contract ValidateSigOffchain {
    constructor(address signer, bytes32 hash, bytes memory signature) {
        UniversalSigValidator validator = new UniversalSigValidator();
        bool valid = validator.isValidSigWithSideEffects(signer, hash, signature);
        assembly {
            mstore(0, valid)
            return(31, 1)
        }
    }
}
