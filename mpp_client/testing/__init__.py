"""Test helpers: a spec-conformant paid server and pytest fixtures.

``PaidServer`` is a plain ASGI app (no dependency); ``LocalServer`` runs any
ASGI app on a loopback socket and needs the ``testing`` extra (uvicorn).
The pytest fixtures (``mpp_server``, ``mpp_server_url``) are registered
automatically when mpp-client is installed.
"""

from ._runner import LocalServer
from ._server import PaidServer, Payment, Route

__all__ = ["LocalServer", "PaidServer", "Payment", "Route"]
