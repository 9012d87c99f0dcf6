"""Test helpers: a spec-conformant paid server and pytest fixtures.

``PaidServer`` is a plain ASGI app (no dependency) that accepts dev vouchers,
or any method through a :class:`Verifier` (``mpp_client.testing.evm`` has
one that settles on a local EVM chain; ``mpp_client.testing.x402`` sells over
x402 instead); ``LocalServer`` runs any ASGI app on
a loopback socket and needs the ``testing`` extra (uvicorn).
The pytest fixtures (``mpp_server``, ``mpp_server_url``) are registered
automatically when mpp-client is installed.
"""

from ._runner import LocalServer
from ._server import (
    DevVoucherVerifier,
    PaidServer,
    Payment,
    Route,
    Settlement,
    VerificationFailed,
    Verifier,
)

__all__ = [
    "DevVoucherVerifier",
    "LocalServer",
    "PaidServer",
    "Payment",
    "Route",
    "Settlement",
    "VerificationFailed",
    "Verifier",
]
