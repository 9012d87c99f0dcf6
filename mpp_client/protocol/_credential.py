"""The ``Authorization: Payment <base64url JSON>`` credential."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import ProtocolError
from ._b64 import Base64Error, b64url_decode_json, b64url_encode
from ._challenge import METHOD_RE, Challenge

__all__ = ["MAX_CREDENTIAL_BYTES", "Credential"]

#: A credential echoes its challenge, so it may be several times its size.
MAX_CREDENTIAL_BYTES = 64 * 1024

_ECHO_OPTIONAL = ("description", "digest", "expires", "opaque", "header")


@dataclass(frozen=True, slots=True, eq=False)
class Credential:
    """A payment proof for one challenge.

    ``echo`` is the challenge as it goes back to the server: ``id``, ``realm``,
    ``method``, ``intent``, ``request`` and, only when the challenge had them,
    ``description``, ``digest``, ``expires``, ``opaque`` and ``header``, all
    as the exact strings received. ``payload`` is method specific and secret:
    it never appears in ``repr()``.
    """

    echo: Mapping[str, str]
    payload: Mapping[str, Any]
    source: str | None = None

    @classmethod
    def for_challenge(
        cls, challenge: Challenge, payload: Mapping[str, Any], *, source: str | None = None
    ) -> Credential:
        """Build the credential answering ``challenge``, echoing its wire strings."""
        echo: dict[str, str] = {
            "id": challenge.id,
            "realm": challenge.realm,
            "method": challenge.method,
            "intent": challenge.intent,
            "request": challenge.request_b64,
        }
        if challenge.description is not None:
            echo["description"] = challenge.description
        if challenge.digest is not None:
            echo["digest"] = challenge.digest
        if challenge.expires_raw is not None:
            echo["expires"] = challenge.expires_raw
        if challenge.opaque_b64 is not None:
            echo["opaque"] = challenge.opaque_b64
        if challenge.header is not None:
            echo["header"] = challenge.header
        return cls(echo=echo, payload=payload, source=source)

    @property
    def challenge_id(self) -> str:
        return self.echo["id"]

    def to_json(self) -> dict[str, Any]:
        """The JSON object that is base64url-encoded on the wire."""
        data: dict[str, Any] = {"challenge": dict(self.echo), "payload": dict(self.payload)}
        if self.source is not None:
            data["source"] = self.source
        return data

    def to_header(self) -> str:
        """Format as the header value ``Payment <base64url JSON>``."""
        try:
            text = json.dumps(
                self.to_json(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            return "Payment " + b64url_encode(text.encode("utf-8"))
        except (TypeError, ValueError) as exc:
            # The message names the problem, never the payload's contents.
            raise ProtocolError(f"credential payload is not JSON-serializable: {exc}") from None

    @classmethod
    def parse(cls, value: str) -> Credential:
        """Parse an ``Authorization``/``Payment-Authorization`` value (server side)."""
        if not isinstance(value, str):
            raise ProtocolError("credential must be a string")
        if len(value) > MAX_CREDENTIAL_BYTES:
            raise ProtocolError(f"credential is over the {MAX_CREDENTIAL_BYTES} byte limit")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "payment" or not token.strip():
            raise ProtocolError("credential does not use the Payment scheme")
        try:
            data = b64url_decode_json(token.strip())
        except Base64Error as exc:
            raise ProtocolError(
                f"credential must be base64url of a JSON object: it {exc}"
            ) from None
        challenge = data.get("challenge")
        if not isinstance(challenge, dict):
            raise ProtocolError("credential has no 'challenge' object")
        for name in ("id", "realm", "method", "intent", "request"):
            if not isinstance(challenge.get(name), str):
                raise ProtocolError(f"credential challenge is missing the string field {name!r}")
        if not challenge["id"]:
            raise ProtocolError("credential challenge has an empty 'id'")
        if METHOD_RE.fullmatch(challenge["method"]) is None:
            raise ProtocolError("credential challenge has an invalid method")
        echo = {k: challenge[k] for k in ("id", "realm", "method", "intent", "request")}
        for name in _ECHO_OPTIONAL:
            if name in challenge:
                if not isinstance(challenge[name], str):
                    raise ProtocolError(f"credential challenge field {name!r} must be a string")
                echo[name] = challenge[name]
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise ProtocolError("credential has no 'payload' object")
        source = data.get("source")
        if source is not None and not isinstance(source, str):
            raise ProtocolError("credential 'source' must be a string")
        return cls(echo=echo, payload=payload, source=source)

    def __repr__(self) -> str:
        return (
            f"Credential(challenge_id={self.echo.get('id')!r}, "
            f"method={self.echo.get('method')!r}, payload=<redacted>)"
        )
