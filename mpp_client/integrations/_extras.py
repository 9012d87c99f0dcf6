"""Optional imports that name the ``pip install`` they need."""

from __future__ import annotations

import importlib
from types import ModuleType

from .._exceptions import PaymentError

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise a :class:`PaymentError` naming ``mpp-client[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".", maxsplit=1)[0]
        raise PaymentError(f'{what} needs {package}: pip install "mpp-client[{extra}]"') from None
