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
from ._transport import BoundedBody

__all__ = ["DiscoveryBody", "discovery_url"]


def discovery_url(origin: httpx.URL | str) -> httpx.URL:
    """Where ``origin`` publishes its discovery document."""
    return httpx.URL(origin).join(DISCOVERY_PATH)


def _too_large(response: httpx.Response) -> DiscoveryError:
    return DiscoveryError(
        f"the discovery document is over {MAX_DISCOVERY_BYTES} bytes; not reading it",
        response=response,
    )


class DiscoveryBody(BoundedBody):
    """The document of one discovery response, gathered chunk by chunk (:meth:`add`)."""

    __slots__ = ()

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response, MAX_DISCOVERY_BYTES, _too_large)

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
            return parse_discovery(self.content())
        except DiscoveryError as exc:
            exc.response = response
            raise
