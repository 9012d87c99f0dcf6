"""Names a package exports but imports on first use (PEP 562).

``import mpp_client`` is paid by every program that merely might pay, so it
loads only what the payment loop needs to start: the wire format, the
engine, the ledger interface. The stores, the wallets' crypto, MCP, x402
and discovery load when a program first names them. A package keeps a
table of those names and forwards its module ``__getattr__`` here::

    _LAZY = {"SqliteLedger": "._sqlite"}

    def __getattr__(name: str) -> Any:
        return load(__name__, _LAZY, name, globals())

Type checkers see the names through ``if TYPE_CHECKING:`` imports beside the
table, so nothing is typed ``Any`` to its users.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from importlib import import_module
from typing import Any

__all__ = ["load"]


def load(
    package: str, table: Mapping[str, str], name: str, namespace: MutableMapping[str, Any]
) -> Any:
    """The attribute ``name`` of ``package``, imported from the module ``table`` names.

    The value is stored in the package's ``namespace``, so the second lookup
    is a plain attribute read and never comes back here.
    """
    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(import_module(module, package), name)
    namespace[name] = value
    return value
