"""A linear-time tokenizer for ``WWW-Authenticate`` field values (RFC 9110 §11).

One field value may hold several challenges of several schemes::

    Basic realm="x", Payment id="a", realm="api", method="tempo", ...

The hard part is telling ``, name=value`` (another parameter) from
``, Scheme ...`` (another challenge): a token followed by ``=`` is a
parameter, anything else starts a new challenge. The scanner never backtracks:
each character is looked at a bounded number of times, so hostile input such
as thousands of backslashes in an unclosed quoted string costs linear time.

It is deliberately tolerant where the reference servers are sloppy: garbage
after a parameter value is skipped up to the next top-level comma, and an
unclosed quoted string ends the value at the end of the field. Such damage is
recorded on the parsed challenge so strict callers can act on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["RawChallenge", "split_challenges", "unescape_quoted"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS = re.compile(r"[ \t]*")
_VALUE_TOKEN = re.compile(r'[^\s,"]+')
_QUOTED_RUN = re.compile(r'[^"\\]*')
# Garbage between a value and the next comma: runs of plain chars or quoted strings.
_GARBAGE_RUN = re.compile(r'[^,"]*')
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


@dataclass(slots=True)
class RawChallenge:
    """One challenge as scanned: scheme, parameters in order, and any damage."""

    scheme: str
    params: list[tuple[str, str]] = field(default_factory=list)
    token68: str | None = None
    # Names of parameters whose value was cut short (unclosed quoted string).
    broken: list[str] = field(default_factory=list)
    # True when something that is not a parameter was skipped.
    damaged: bool = False


def unescape_quoted(body: str) -> str:
    """Undo quoted-pair escapes, and the ``\\uXXXX`` escapes the reference SDKs emit.

    A ``\\u`` followed by four hex digits is a UTF-16 code unit (surrogate pairs
    combine; a lone surrogate becomes U+FFFD). Any other ``\\c`` is ``c``.
    """
    if "\\" not in body:
        return body
    out: list[str] = []
    index = 0
    size = len(body)
    while index < size:
        slash = body.find("\\", index)
        if slash < 0:
            out.append(body[index:])
            break
        out.append(body[index:slash])
        index = slash + 1
        if index >= size:
            break
        if body[index] == "u" and _HEX4.fullmatch(body, index + 1, index + 5):
            code = int(body[index + 1 : index + 5], 16)
            index += 5
            if 0xD800 <= code <= 0xDBFF:
                if (
                    body.startswith("\\u", index)
                    and _HEX4.fullmatch(body, index + 2, index + 6)
                    and 0xDC00 <= (low := int(body[index + 2 : index + 6], 16)) <= 0xDFFF
                ):
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    index += 6
                else:
                    out.append("\ufffd")
            elif 0xDC00 <= code <= 0xDFFF:
                out.append("\ufffd")
            else:
                out.append(chr(code))
        else:
            out.append(body[index])
            index += 1
    return "".join(out)


def _scan_quoted(text: str, pos: int) -> tuple[str, int, bool]:
    """Scan a quoted-string whose opening quote is at ``pos``.

    Returns (raw body, position after the closing quote, closed?).
    """
    index = pos + 1
    size = len(text)
    while True:
        match = _QUOTED_RUN.match(text, index)
        assert match is not None  # the pattern matches the empty string
        index = match.end()
        if index >= size:
            return text[pos + 1 :], size, False
        if text[index] == '"':
            return text[pos + 1 : index], index + 1, True
        # A backslash: skip it and the character it escapes.
        index += 2
        if index > size:
            return text[pos + 1 :], size, False


def _skip_garbage(text: str, pos: int) -> int:
    """Skip to the next top-level comma (quoted strings inside are skipped whole)."""
    size = len(text)
    while pos < size:
        match = _GARBAGE_RUN.match(text, pos)
        assert match is not None
        pos = match.end()
        if pos >= size or text[pos] == ",":
            return pos
        pos = _scan_quoted(text, pos)[1]
    return pos


def _ows(text: str, pos: int) -> int:
    match = _OWS.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def split_challenges(text: str) -> list[RawChallenge]:
    """Split one field value into challenges. Never raises; damage is recorded."""
    challenges: list[RawChallenge] = []
    size = len(text)
    pos = 0
    current: RawChallenge | None = None
    while pos < size:
        pos = _ows(text, pos)
        if pos >= size:
            break
        char = text[pos]
        if char == ",":
            pos += 1
            continue
        token = _TOKEN.match(text, pos)
        if token is None:
            # Neither a scheme nor a parameter name can start here.
            if current is not None:
                current.damaged = True
            pos = _skip_garbage(text, pos if char == '"' else pos + 1)
            continue
        after = _ows(text, token.end())
        if after >= size or text[after] != "=":
            # A token not followed by "=" starts a new challenge: it is the scheme.
            current = RawChallenge(scheme=token.group())
            challenges.append(current)
            pos = token.end()
            start = _ows(text, pos)
            if start > pos:
                # "Scheme token68" (e.g. "Bearer abc", "Basic YQ==") instead of params.
                t68 = _TOKEN68.match(text, start)
                if t68 is not None:
                    rest = _ows(text, t68.end())
                    if rest >= size or text[rest] == ",":
                        current.token68 = t68.group()
                        pos = rest
            continue
        if current is None:
            # A parameter before any scheme: nothing to attach it to.
            pos = _skip_garbage(text, after)
            continue
        name = token.group().lower()
        pos = _ows(text, after + 1)
        if pos < size and text[pos] == '"':
            body, pos, closed = _scan_quoted(text, pos)
            if not closed:
                current.broken.append(name)
                continue
            value = unescape_quoted(body)
        else:
            match = _VALUE_TOKEN.match(text, pos)
            value = match.group() if match is not None else ""
            pos = match.end() if match is not None else pos
        current.params.append((name, value))
        # After a value only a comma (or the end) may follow; skip anything else.
        rest = _ows(text, pos)
        if rest < size and text[rest] != ",":
            current.damaged = True
            pos = _skip_garbage(text, rest)
        else:
            pos = rest
    return challenges
