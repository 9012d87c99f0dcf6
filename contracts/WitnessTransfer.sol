// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IERC20Like {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

interface IERC1271Like {
    function isValidSignature(bytes32 hash, bytes memory signature) external view returns (bytes4);
}

/// @title WitnessTransfer: signature transfers with a witness, Permit2's way.
/// @notice Written for mpp-client's chain tests from Permit2's public interface:
/// the same function signatures, EIP-712 domain ("Permit2", chainId, this
/// contract), struct hashes, witness type-string convention and unordered
/// nonce bitmap, so a signature made for the canonical Permit2 deployment
/// verifies here too. Only the witness transfers the `evm` charge uses are
/// implemented. The domain is computed from `address(this)` at call time, so
/// the runtime code can be placed at Permit2's canonical address on a test node.
contract WitnessTransfer {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct PermitBatchTransferFrom {
        TokenPermissions[] permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    /// @notice owner => word position => bitmap of used nonces.
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("Permit2");
    bytes32 private constant _TOKEN_PERMISSIONS_TYPEHASH = keccak256("TokenPermissions(address token,uint256 amount)");
    string private constant _SINGLE_WITNESS_STUB =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";
    string private constant _BATCH_WITNESS_STUB =
        "PermitBatchWitnessTransferFrom(TokenPermissions[] permitted,address spender,uint256 nonce,uint256 deadline,";
    uint256 private constant _HALF_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    error SignatureExpired(uint256 deadline);
    error InvalidAmount(uint256 maxAmount);
    error LengthMismatch();
    error InvalidNonce();
    error InvalidSignature();
    error InvalidSigner();
    error TransferFailed();

    event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);

    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, block.chainid, address(this)));
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        if (transferDetails.requestedAmount > permit.permitted.amount) {
            revert InvalidAmount(permit.permitted.amount);
        }
        bytes32 typeHash = keccak256(abi.encodePacked(_SINGLE_WITNESS_STUB, witnessTypeString));
        bytes32 structHash = keccak256(
            abi.encode(typeHash, _hashPermissions(permit.permitted), msg.sender, permit.nonce, permit.deadline, witness)
        );
        _useNonce(owner, permit.nonce);
        _verify(signature, _digest(structHash), owner);
        _pull(permit.permitted.token, owner, transferDetails.to, transferDetails.requestedAmount);
    }

    function permitBatchWitnessTransferFrom(
        PermitBatchTransferFrom calldata permit,
        SignatureTransferDetails[] calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        uint256 count = permit.permitted.length;
        if (count != transferDetails.length) revert LengthMismatch();
        bytes32 structHash = _batchStructHash(permit, witness, witnessTypeString);
        _useNonce(owner, permit.nonce);
        _verify(signature, _digest(structHash), owner);
        for (uint256 i = 0; i < count; ++i) {
            uint256 requested = transferDetails[i].requestedAmount;
            if (requested > permit.permitted[i].amount) revert InvalidAmount(permit.permitted[i].amount);
            if (requested != 0) {
                _pull(permit.permitted[i].token, owner, transferDetails[i].to, requested);
            }
        }
    }

    /// @notice Burn nonces of the caller: bits set in `mask` at word `wordPos`.
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit UnorderedNonceInvalidation(msg.sender, wordPos, mask);
    }

    function _batchStructHash(
        PermitBatchTransferFrom calldata permit,
        bytes32 witness,
        string calldata witnessTypeString
    ) private view returns (bytes32) {
        uint256 count = permit.permitted.length;
        bytes32[] memory hashes = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            hashes[i] = _hashPermissions(permit.permitted[i]);
        }
        bytes32 typeHash = keccak256(abi.encodePacked(_BATCH_WITNESS_STUB, witnessTypeString));
        return keccak256(
            abi.encode(
                typeHash, keccak256(abi.encodePacked(hashes)), msg.sender, permit.nonce, permit.deadline, witness
            )
        );
    }

    function _hashPermissions(TokenPermissions calldata permitted) private pure returns (bytes32) {
        return keccak256(abi.encode(_TOKEN_PERMISSIONS_TYPEHASH, permitted.token, permitted.amount));
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
    }

    function _useNonce(address owner, uint256 nonce) private {
        uint256 bit = uint256(1) << (nonce & 0xff);
        uint256 word = nonce >> 8;
        uint256 flipped = nonceBitmap[owner][word] ^= bit;
        if (flipped & bit == 0) revert InvalidNonce();
    }

    function _verify(bytes calldata signature, bytes32 digest, address owner) private view {
        if (owner.code.length > 0) {
            bytes4 magic = IERC1271Like(owner).isValidSignature(digest, signature);
            if (magic != IERC1271Like.isValidSignature.selector) revert InvalidSigner();
            return;
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            r = bytes32(signature[0:32]);
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
        } else if (signature.length == 64) {
            // EIP-2098 compact form: the top bit of `vs` carries the parity.
            bytes32 vs;
            r = bytes32(signature[0:32]);
            vs = bytes32(signature[32:64]);
            s = vs & bytes32(0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff);
            v = uint8(uint256(vs >> 255)) + 27;
        } else {
            revert InvalidSignature();
        }
        if (uint256(s) > _HALF_ORDER) revert InvalidSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
        if (signer != owner) revert InvalidSigner();
    }

    function _pull(address token, address from, address to, uint256 amount) private {
        (bool ok, bytes memory data) =
            token.call(abi.encodeWithSelector(IERC20Like.transferFrom.selector, from, to, amount));
        if (!ok || (data.length != 0 && !abi.decode(data, (bool)))) revert TransferFailed();
        if (data.length == 0 && token.code.length == 0) revert TransferFailed();
    }
}
