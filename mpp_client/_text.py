"""Text that came from a server, made safe to show.

Challenge ids, realms, payees, descriptions and problem details are chosen by
the server. Written raw into a log line, a ``\\n`` forges the next line and an
ANSI escape repaints the operator's terminal; a bidi override reorders what a
human reads. :func:`printable` escapes every such character the way ``repr``
would, and :func:`get_logger` gives each module a logger whose records are
passed through it, so no call site has to remember.

This module imports nothing from the package: every room may use it.
"""

from __future__ import annotations

import logging
import unicodedata

__all__ = ["get_logger", "printable"]

#: Unicode categories that never belong in a displayed string: controls (Cc),
#: format characters such as bidi overrides and zero-width joiners (Cf), line
#: and paragraph separators (Zl, Zp), surrogates and unassigned code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(char: str) -> str:
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named is not None:
        return named
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object, limit: int | None = None) -> str:
    """``text`` with control, format and separator characters escaped (``\\x1b``, ``\\n``).

    A backslash is left alone: the result is for reading, not for parsing
    back. ``limit`` truncates long values (with ``…``) so a hostile server
    cannot flood a log line.
    """
    value = text if isinstance(text, str) else str(text)
    if limit is not None and len(value) > limit:
        value = value[:limit] + "…"
    if value.isprintable():  # the common case: nothing to escape
        return value
    return "".join(
        _escape(char) if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
        for char in value
    )


class _PrintableFilter(logging.Filter):
    """Formats a record once and escapes the result, so arguments cannot forge lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = printable(message)
        if safe is not message or record.args:
            record.msg = safe
            record.args = None
        return True


_FILTER = _PrintableFilter()


def get_logger(name: str) -> logging.Logger:
    """The logger ``name``, with server-chosen text in its records escaped.

    A filter on a logger applies only to records logged through that very
    logger (not its children), so each module asks for its own here.
    """
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
