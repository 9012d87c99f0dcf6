"""Where a credential may travel, what of a URL is recorded, how much of a 402 is read.

A credential is a bearer instrument for money: it goes only over HTTPS, or
over plain HTTP to a loopback host when the user opted in for tests. URLs are
recorded with their query values redacted (they often carry API keys). A 402
body only holds a problem detail, so a hostile size is refused unread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import httpx

from .._exceptions import ChallengeError, InsecureTransport

__all__ = [
    "MAX_402_BODY",
    "TRANSPORT_ERROR",
    "UNSAFE_METHODS",
    "BoundedBody",
    "check_transport",
    "is_loopback",
    "read_402_limit_error",
    "redact_url",
]

#: Where ``AsyncClient`` leaves a transport error on the paid request that failed,
#: for the async driver to name as the cause of a lost paid request. Present
#: (None until an error) on exactly the requests that carry a credential.
TRANSPORT_ERROR = "mpp_client.transport_error"
#: Methods whose retried request must carry an Idempotency-Key.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The most of a 402 body we will read (it only holds a problem detail).
MAX_402_BODY = 64 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def redact_url(url: httpx.URL) -> str:
    """The URL with every query value replaced, so tokens in queries never reach records."""
    if not url.query:
        return str(url.copy_with(fragment=None)) if url.fragment else str(url)
    params = [(key, "REDACTED") for key, _ in url.params.multi_items()]
    return str(url.copy_with(params=params, fragment=None))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (IPv4 127/8, IPv6 ::1)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(
    url: httpx.URL, response: httpx.Response, *, allow_insecure_localhost: bool
) -> None:
    """Raise :class:`~mpp_client.InsecureTransport` unless a credential may go to ``url``."""
    if url.scheme == "https":
        return
    if url.scheme == "http" and is_loopback(url.host):
        if allow_insecure_localhost:
            return
        raise InsecureTransport(
            f"refusing to send a payment credential over plain HTTP to {url.host}; "
            "pass allow_insecure_localhost=True to allow loopback hosts in tests",
            response=response,
        )
    raise InsecureTransport(
        f"refusing to send a payment credential over {url.scheme}:// to {url.host}: "
        "credentials only travel over HTTPS",
        response=response,
    )


def read_402_limit_error(response: httpx.Response) -> ChallengeError:
    """The refusal for a 402 body larger than :data:`MAX_402_BODY`."""
    return ChallengeError(
        f"402 response body is over {MAX_402_BODY} bytes; refusing to process it",
        response=response,
    )


class BoundedBody:
    """A response body gathered as it arrives, refused past ``limit`` bytes.

    A hostile server may declare or send any size: the declared length is
    refused before a byte is read, the sent one as soon as it passes the
    limit, each with the error ``too_large`` makes for the response. The 402
    reader and the discovery reader share it.
    """

    __slots__ = ("_chunks", "_limit", "_response", "_size", "_too_large")

    def __init__(
        self,
        response: httpx.Response,
        limit: int,
        too_large: Callable[[httpx.Response], Exception],
    ) -> None:
        self._response = response
        self._limit = limit
        self._too_large = too_large
        self._chunks: list[bytes] = []
        self._size = 0
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_large(response)

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise self._too_large(self._response)
        self._chunks.append(chunk)

    def content(self) -> bytes:
        return b"".join(self._chunks)
