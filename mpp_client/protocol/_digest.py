"""RFC 9530 content digests, for challenges bound to a request body.

Servers write the ``digest`` parameter in more than one way:
``sha-256=:BASE64=:`` (RFC 9530 structured field), ``sha-256=BASE64=`` and
``sha-256=BASE64`` (no colons, with or without padding). All are accepted;
several comma-separated digests are allowed, and every one whose algorithm we
know must match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .._exceptions import ChallengeError

__all__ = ["content_digest", "digest_matches", "parse_digest"]

_ALGORITHMS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """The RFC 9530 ``Content-Digest`` value for ``body``: ``sha-256=:...:``."""
    factory = _ALGORITHMS.get(algorithm)
    if factory is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}=:{base64.b64encode(factory(body).digest()).decode('ascii')}:"


def parse_digest(value: str) -> dict[str, bytes]:
    """Parse a digest parameter into ``{algorithm: raw digest}``.

    Unknown algorithms are kept out; a known one that does not decode, or a
    value with no known algorithm at all, raises :class:`ChallengeError`.
    """
    found: dict[str, bytes] = {}
    for item in value.split(","):
        name, sep, encoded = item.strip().partition("=")
        if not sep:
            raise ChallengeError("challenge digest is not of the form algorithm=value")
        algorithm = name.strip().lower()
        if algorithm not in _ALGORITHMS:
            continue
        encoded = encoded.strip()
        if encoded.startswith(":") and encoded.endswith(":") and len(encoded) >= 2:
            encoded = encoded[1:-1]
        encoded += "=" * (-len(encoded) % 4)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            try:
                # Some servers write the digest in the URL-safe alphabet.
                raw = base64.b64decode(encoded, altchars=b"-_", validate=True)
            except (binascii.Error, ValueError):
                raise ChallengeError(f"challenge {algorithm} digest is not base64") from None
        if len(raw) != _ALGORITHMS[algorithm]().digest_size:
            raise ChallengeError(f"challenge {algorithm} digest has the wrong length")
        found[algorithm] = raw
    if not found:
        raise ChallengeError(
            "challenge digest uses no supported algorithm (sha-256 or sha-512 expected)"
        )
    return found


def digest_matches(value: str, body: bytes) -> bool:
    """True when every known digest in ``value`` matches ``body``."""
    expected = parse_digest(value)
    return all(
        hmac.compare_digest(_ALGORITHMS[algorithm](body).digest(), raw)
        for algorithm, raw in expected.items()
    )
