"""Keys and JSON-RPC for the ``evm`` and ``tempo`` wallets (being folded into ``_chain``).

Key loading that never quotes the key, and the JSON-RPC envelope. Private.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

__all__ = ["RpcError", "as_account", "rpc_body", "rpc_result"]

_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")


# -- keys ------------------------------------------------------------------------


def as_account(key: object, label: str) -> LocalAccount:
    """A ``LocalAccount`` from a hex string, 32 bytes or an account.

    ``label`` names the key in errors (``"an EVM private key"``). No error
    quotes the key: the library's own message is replaced.
    """
    if isinstance(key, LocalAccount):
        return key
    if isinstance(key, bytes | bytearray):
        raw = bytes(key)
    elif isinstance(key, str):
        text = key[2:] if key[:2] in ("0x", "0X") else key
        if _KEY_HEX.fullmatch(text) is None:
            raise ValueError(f"{label} is 32 bytes: 64 hex digits, 0x-prefixed or not")
        raw = bytes.fromhex(text)
    else:
        raise TypeError("key must be a hex string, 32 bytes or an eth_account LocalAccount")
    if len(raw) != 32:
        raise ValueError(f"{label} is 32 bytes")
    try:
        account: LocalAccount = Account.from_key(raw)
    except Exception:  # the library's message could quote the key: replace it
        raise ValueError("not a valid secp256k1 private key") from None
    return account


# -- JSON-RPC --------------------------------------------------------------------


class RpcError(Exception):
    """The node answered a JSON-RPC call with an error (the call reached it)."""

    def __init__(self, method: str, code: object, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.rpc_message = message


def rpc_body(method: str, params: Sequence[Any], request_id: int = 1) -> dict[str, Any]:
    """A JSON-RPC 2.0 request object."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


def rpc_result(method: str, response: httpx.Response) -> Any:
    """The ``result`` of a JSON-RPC response.

    ``httpx.HTTPStatusError`` for an HTTP error status; :class:`RpcError` for a
    JSON-RPC error or a body that is not a JSON-RPC response object.
    """
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise RpcError(method, None, "malformed JSON-RPC response")
    error = data.get("error")
    if error is not None:
        message = error.get("message", "error") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        raise RpcError(method, code, str(message)[:300])
    return data.get("result")
