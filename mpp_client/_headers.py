"""Headers that carry payment credentials: where they go, and where they never show.

A credential is a bearer instrument for money. httpx hides ``Authorization``
in ``repr(headers)``, but a challenge may ask for the credential in
``Payment-Authorization`` instead, which httpx shows in full; and a request's
headers end up in places users print (``error.response.request.headers``).
:class:`CredentialHeaders` hides every header that carries one, and
:func:`mask_credentials` puts every request of a finished exchange behind it.
"""

from __future__ import annotations

import httpx

__all__ = [
    "CREDENTIAL_HEADERS",
    "X402_CREDENTIAL_HEADERS",
    "CredentialHeaders",
    "hide_credentials",
    "mask_credentials",
    "strip_credentials",
]

#: Where the flow puts a credential: ``Authorization``, or the header a challenge names.
CREDENTIAL_HEADERS = ("Authorization", "Payment-Authorization")
#: x402's payment headers (version 2 and 1): whatever they hold is a payment.
X402_CREDENTIAL_HEADERS = ("PAYMENT-SIGNATURE", "X-PAYMENT")
_SECRET_NAMES = frozenset(
    {"authorization", "proxy-authorization", "payment-authorization"}
    | {name.lower() for name in X402_CREDENTIAL_HEADERS}
)
_HIDDEN = "[secure]"


def _carries_credential(name: str, value: str) -> bool:
    return name.lower() in _SECRET_NAMES or value[:8].lower() == "payment "


class CredentialHeaders(httpx.Headers):
    """``httpx.Headers`` whose ``repr`` hides every header carrying a credential.

    Hidden: ``Authorization``, ``Proxy-Authorization``,
    ``Payment-Authorization``, x402's ``PAYMENT-SIGNATURE`` and ``X-PAYMENT``,
    and any header whose value uses the ``Payment`` scheme, whatever its name.
    Indexing still returns the values: the request has to send them.
    """

    def __repr__(self) -> str:
        items = [
            (name, _HIDDEN if _carries_credential(name, value) else value)
            for name, value in self.multi_items()
        ]
        as_dict = dict(items)
        shown: object = as_dict if len(as_dict) == len(items) else items
        encoding = "" if self.encoding == "ascii" else f", encoding={self.encoding!r}"
        return f"Headers({shown!r}{encoding})"


def hide_credentials(request: httpx.Request) -> None:
    """Make ``repr(request.headers)`` hide the credentials it carries (idempotent)."""
    if type(request.headers) is not CredentialHeaders:
        request.headers = CredentialHeaders(request.headers)


def mask_credentials(response: httpx.Response) -> None:
    """Hide credentials in the request of ``response`` and of every response before it.

    A redirect built by httpx (or by the user's own client) gets plain
    headers; this runs once the exchange is over, before anything is
    returned or raised.
    """
    for each in (*response.history, response):
        try:
            request = each.request
        except RuntimeError:  # a response built without a request
            continue
        if any(_carries_credential(k, v) for k, v in request.headers.items()):
            hide_credentials(request)


def strip_credentials(headers: httpx.Headers) -> None:
    """Remove payment credentials: single use and bound to one origin, never forwarded."""
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value is not None and value[:8].lower() == "payment ":
            del headers[name]
    for name in X402_CREDENTIAL_HEADERS:
        if name in headers:
            del headers[name]
