"""Reading a service's discovery document: bounded, and advisory only.

``Client.discover`` streams ``/openapi.json`` through :class:`DiscoveryBody`,
which refuses it past ``MAX_DISCOVERY_BYTES`` (declared or as it arrives)
before more is read, and then parses it strictly. What it says is never
paid: the 402 a request gets is what is checked, decided and paid.
"""

from __future__ import annotations

import httpx

from ..protocol._discovery import (
    DISCOVERY_PATH,
    MAX_DISCOVERY_BYTES,
    Discovery,
    DiscoveryError,
    parse_discovery,
)

__all__ = ["DiscoveryBody", "discovery_url"]


def discovery_url(origin: httpx.URL | str) -> httpx.URL:
    """Where ``origin`` publishes its discovery document."""
    return httpx.URL(origin).join(DISCOVERY_PATH)


class DiscoveryBody:
    """The document of one discovery response, gathered chunk by chunk."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks: list[bytes] = []
        self._size = 0
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_DISCOVERY_BYTES:
            raise self._too_large()

    def add(self, chunk: bytes) -> None:
        """Keep ``chunk``; raises :class:`DiscoveryError` once the body is too large."""
        self._size += len(chunk)
        if self._size > MAX_DISCOVERY_BYTES:
            raise self._too_large()
        self._chunks.append(chunk)

    def document(self) -> Discovery:
        """The parsed document; raises :class:`DiscoveryError` for any other answer."""
        response = self._response
        if response.status_code != 200:
            raise DiscoveryError(
                f"GET {DISCOVERY_PATH} answered HTTP {response.status_code}: "
                "the service publishes no discovery document",
                response=response,
            )
        try:
            return parse_discovery(b"".join(self._chunks))
        except DiscoveryError as exc:
            exc.response = response
            raise

    def _too_large(self) -> DiscoveryError:
        return DiscoveryError(
            f"the discovery document is over {MAX_DISCOVERY_BYTES} bytes; not reading it",
            response=self._response,
        )
