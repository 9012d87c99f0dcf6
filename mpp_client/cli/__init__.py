"""The ``mpp`` command line: pay, quote, discover, and look after the ledger, keys and mandates.

``pip install "mpp-client[cli]"`` installs it (typer and rich); ``mpp ledger
serve`` also needs ``mpp-client[dashboard]``. Every command is a thin layer
over the library: the same flow pays, the same policy decides, the same
ledger records. Exit codes are documented in :data:`EXIT_CODES` (and by
``mpp --help``); scripts can rely on them.

Nothing here prints a secret: passphrases come from a prompt, an environment
variable or the OS keyring and are never echoed; keys, credentials and
signatures never reach the terminal. Text a server chose (payees, realms,
descriptions, problem details) is escaped before it is shown.
"""

from __future__ import annotations

import sys

from ._exit import EXIT_CODES, ExitCode

__all__ = ["EXIT_CODES", "ExitCode", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``mpp`` with ``argv`` (default: the process arguments); return the exit code."""
    try:
        from ._app import app  # noqa: PLC0415 - typer and rich are the cli extra
    except ImportError as exc:
        missing = exc.name or "a dependency"
        print(
            f'mpp needs {missing}, from the cli extra: pip install "mpp-client[cli]"',
            file=sys.stderr,
        )
        return int(ExitCode.USAGE)
    try:
        app(args=argv, prog_name="mpp", standalone_mode=True)
    except SystemExit as done:
        code = done.code
        if code is None:
            return 0
        return code if isinstance(code, int) else int(ExitCode.ERROR)
    return 0
