"""Stateless challenge-id binding: HMAC-SHA256 over the draft's seven slots.

Only servers issue ids; the client needs none of this. It lives in the
protocol package so the embedded test server and the conformance suite share
one implementation.
"""

from __future__ import annotations

import hashlib
import hmac

from ._b64 import b64url_encode

__all__ = ["MIN_SECRET_BYTES", "challenge_id"]

MIN_SECRET_BYTES = 32


def challenge_id(
    secret: bytes,
    *,
    realm: str,
    method: str,
    intent: str,
    request_b64: str,
    expires: str | None = None,
    digest: str | None = None,
    opaque_b64: str | None = None,
    header: str | None = None,
) -> str:
    """Compute the challenge id: base64url of an HMAC-SHA256 over the joined slots.

    The slots are ``realm|method|intent|request|expires|digest|opaque``, with
    empty strings for absent optional values.

    A non-default credential ``header`` is bound too, as an extra slot before
    ``opaque`` (the reference SDKs do this; ``Authorization`` adds nothing).
    Secrets shorter than 32 bytes are refused with ``ValueError``.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"challenge secret must be at least {MIN_SECRET_BYTES} bytes")
    slots = [realm, method, intent, request_b64, expires or "", digest or ""]
    if header and header.lower() != "authorization":
        slots.append(header)
    slots.append(opaque_b64 or "")
    mac = hmac.new(secret, "|".join(slots).encode("utf-8"), hashlib.sha256)
    return b64url_encode(mac.digest())
