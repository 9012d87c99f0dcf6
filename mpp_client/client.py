"""``Client`` and ``AsyncClient``: httpx clients that pay for what they use."""

from __future__ import annotations

import os
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import httpx

if TYPE_CHECKING:
    from ._flow import QuoteResult
    from .identity import AgentKey
    from .protocol import Discovery

from ._flow import Engine
from ._flow._observe import PaymentHook, RefusalHook, UnknownHook
from ._flow._transport import TRANSPORT_ERROR
from ._headers import strip_credentials
from .auth import PaymentAuth
from .ledger import Ledger, PaymentRecord
from .methods import PaymentMethod
from .policy import Approver, Decision, SpendPolicy

__all__ = ["AsyncClient", "Client", "payment_decision", "payment_record"]


def payment_decision(response: httpx.Response) -> Decision | None:
    """The policy's decision for a 402 answered in dry-run mode (never paid).

    Same as ``response.extensions.get("mpp_decision")``.
    """
    decision = response.extensions.get("mpp_decision")
    return decision if isinstance(decision, Decision) else None


def payment_record(response: httpx.Response) -> PaymentRecord | None:
    """The payment made for ``response``, or ``None`` if it was not paid for.

    Same as ``response.extensions.get("mpp")``.
    """
    record = response.extensions.get("mpp")
    return record if isinstance(record, PaymentRecord) else None


def _build_payment(
    methods: Sequence[PaymentMethod] | None,
    policy: SpendPolicy | None,
    ledger: Ledger | str | os.PathLike[str] | None,
    options: dict[str, Any],
) -> PaymentAuth | None:
    if methods is None:
        if policy is not None or ledger is not None:
            raise TypeError("policy and ledger need payment methods: pass methods=[...]")
        return None
    return PaymentAuth(methods, policy=policy, ledger=ledger, **options)


class _PaymentMixin:
    """What ``Client`` and ``AsyncClient`` add to their httpx base class.

    Listed before the httpx class in the bases, so ``super()`` here is httpx.
    """

    def __init__(
        self,
        *,
        methods: Sequence[PaymentMethod] | None = None,
        policy: SpendPolicy | None = None,
        ledger: Ledger | str | os.PathLike[str] | None = None,
        allow_insecure_localhost: bool = False,
        max_payments: int = 1,
        clock_skew: timedelta = timedelta(seconds=5),
        accept_payment: bool | str = True,
        approver: Approver | None = None,
        agent_key: AgentKey | None = None,
        on_payment: PaymentHook | None = None,
        on_refusal: RefusalHook | None = None,
        on_unknown: UnknownHook | None = None,
        telemetry: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._payment = _build_payment(
            methods,
            policy,
            ledger,
            {
                "allow_insecure_localhost": allow_insecure_localhost,
                "max_payments": max_payments,
                "clock_skew": clock_skew,
                "accept_payment": accept_payment,
                "approver": approver,
                "agent_key": agent_key,
                "on_payment": on_payment,
                "on_refusal": on_refusal,
                "on_unknown": on_unknown,
                "telemetry": telemetry,
            },
        )

        if self._payment is not None and kwargs.get("transport") is None:
            # The default transport httpx just made: its pool's bookkeeping made linear,
            # for agents paying at high concurrency (same decisions, see _flow._pool).
            # Imported here: httpx itself loads httpcore only with a transport.
            from ._flow._pool import tune_pool  # noqa: PLC0415

            tune_pool(self._transport)  # type: ignore[attr-defined]

        # Every request states what the client pays with: as a default header it
        # is merged in by httpx itself, at no cost per request.
        accept = self._payment.accept_payment if self._payment is not None else None
        if accept and "accept-payment" not in self.headers:  # type: ignore[attr-defined]
            self.headers["Accept-Payment"] = accept  # type: ignore[attr-defined]

    @property
    def payment_auth(self) -> PaymentAuth | None:
        """The payment flow, or ``None`` when this client does not pay."""
        return self._payment

    @property
    def ledger(self) -> Ledger | None:
        return self._payment.ledger if self._payment is not None else None

    @property
    def policy(self) -> SpendPolicy | None:
        return self._payment.policy if self._payment is not None else None

    def _build_request_auth(
        self,
        request: httpx.Request,
        auth: httpx._types.AuthTypes | httpx._client.UseClientDefault | None = (
            httpx.USE_CLIENT_DEFAULT
        ),
    ) -> httpx.Auth:
        # The one hook through which every request's auth passes: wrap it.
        if (
            self._payment is not None
            and isinstance(auth, httpx._client.UseClientDefault)
            and self._auth is None  # type: ignore[attr-defined]
            and not request.url.userinfo
        ):
            return self._payment  # the common case, without building a bare Auth()
        base: httpx.Auth = super()._build_request_auth(request, auth)  # type: ignore[misc]
        if self._payment is None:
            return base
        # httpx uses a bare Auth() to mean "no authentication".
        return self._payment.with_auth(None if type(base) is httpx.Auth else base)

    def _redirect_headers(
        self, request: httpx.Request, url: httpx.URL, method: str
    ) -> httpx.Headers:
        headers: httpx.Headers = super()._redirect_headers(request, url, method)  # type: ignore[misc]
        strip_credentials(headers)
        return headers

    def __repr__(self) -> str:
        return f"<mpp_client.{type(self).__name__} payment={self._payment!r}>"

    # -- quotes and discovery -------------------------------------------------------

    def _unpaid_request(
        self, method: str, url: httpx.URL | str, options: dict[str, Any]
    ) -> httpx.Request:
        """A request the flow sends without paying (a quote, a discovery read)."""
        from ._flow import quote_options  # noqa: PLC0415 - quoting loads on first use

        options["extensions"] = quote_options(options.get("extensions"))
        request: httpx.Request = self.build_request(method, url, **options)  # type: ignore[attr-defined]
        return request

    @property
    def _engine(self) -> Engine | None:
        return self._payment._engine if self._payment is not None else None


class Client(_PaymentMixin, httpx.Client):
    """An ``httpx.Client`` that pays ``402 Payment Required`` responses.

    Takes every ``httpx.Client`` argument, plus:

    - ``methods``: payment methods, in order of preference;
    - ``policy``: the spending policy (payments are refused without one);
    - ``ledger``: where spend is recorded: a Ledger, a SQLite path, a
      ``postgresql://`` URL, or ``"memory:"`` (default: a SQLite file in the
      user's data directory);
    - ``approver``: asked when the policy wants a human approval;
    - ``agent_key``: signs the decision record of every payment;
    - ``on_payment``, ``on_refusal``, ``on_unknown``: event hooks (sync or
      async) that can never break a payment; ``telemetry``: OpenTelemetry;
    - ``allow_insecure_localhost``, ``max_payments``, ``clock_skew``,
      ``accept_payment``: see :class:`~mpp_client.PaymentAuth`.

    Without ``methods`` it is exactly an ``httpx.Client``. Any ``auth`` (given
    here or per request) still applies: payments wrap around it.
    """

    def quote(self, url: httpx.URL | str, method: str = "GET", **options: Any) -> QuoteResult:
        """What requesting ``url`` would cost, and what the policy would say. Never pays.

        Sends the request without paying (as ``extensions={"mpp": {"pay":
        False}}`` would), reads every offer of the 402, quotes each with the
        configured methods and asks the policy, as the payment flow would,
        and stops there: nothing is claimed, reserved, paid or written to the
        ledger. ``options`` are ``build_request`` arguments (``headers``,
        ``json``, ``content``, ``params``...); per-call limits in
        ``extensions={"mpp": {...}}`` (``max_amount``, ``payee``) narrow the
        decision as they would a payment.

        The answer holds for now only: budgets move and challenges expire, and
        a later payment decides afresh. A server that does not answer 402 gets
        a result with no offers (``payment_required`` is False).
        """
        from ._flow import quote_response  # noqa: PLC0415 - quoting loads on first use

        request = self._unpaid_request(method, url, options)
        response = self.send(request, stream=True)
        try:
            return quote_response(self._engine, response)
        finally:
            response.close()

    def discover(self, origin: httpx.URL | str, **options: Any) -> Discovery:
        """The priced operations ``origin`` advertises in ``/openapi.json``.

        Advisory only: the discovery document is unsigned, so the 402
        challenge the server sends when a request is made is what is checked,
        decided and paid, always, whatever this says. Useful to show prices
        and find paid endpoints before calling them. Reads at most
        ``MAX_DISCOVERY_BYTES``; raises :class:`~mpp_client.protocol.DiscoveryError`
        for a missing, oversized or malformed document. Never pays.
        ``options`` are ``build_request`` arguments (``headers``, ``timeout``...).
        """
        from ._flow._discover import DiscoveryBody, discovery_url  # noqa: PLC0415 - on use

        request = self._unpaid_request("GET", discovery_url(origin), options)
        response = self.send(request, stream=True)
        try:
            body = DiscoveryBody(response)
            for chunk in response.iter_bytes():
                body.add(chunk)
        finally:
            response.close()
        return body.document()


async def _watched(
    sending: Coroutine[Any, Any, httpx.Response], request: httpx.Request
) -> httpx.Response:
    """Send a paid request, leaving its transport error on it if it fails."""
    try:
        return await sending
    except httpx.TransportError as exc:
        request.extensions[TRANSPORT_ERROR] = exc
        raise


class AsyncClient(_PaymentMixin, httpx.AsyncClient):
    """The async twin of :class:`Client`: an ``httpx.AsyncClient`` that pays."""

    def _send_handling_redirects(
        self, request: httpx.Request, follow_redirects: bool, history: list[httpx.Response]
    ) -> Coroutine[Any, Any, httpx.Response]:
        sending: Coroutine[Any, Any, httpx.Response] = super()._send_handling_redirects(
            request, follow_redirects=follow_redirects, history=history
        )
        # Only a paid request is watched (see _flow._drivers._lost_cause): a plain
        # function, so an unpaid request pays for no extra coroutine around its send.
        if TRANSPORT_ERROR in request.extensions:
            return _watched(sending, request)
        return sending

    async def quote(self, url: httpx.URL | str, method: str = "GET", **options: Any) -> QuoteResult:
        """The async twin of :meth:`Client.quote`: what a request would cost. Never pays."""
        from ._flow import quote_response  # noqa: PLC0415 - quoting loads on first use

        request = self._unpaid_request(method, url, options)
        response = await self.send(request, stream=True)
        try:
            engine = self._engine
            if engine is not None and engine.ledger.blocking:
                # The policy reads the ledger: off the event loop, as the flow does.
                return await anyio.to_thread.run_sync(quote_response, engine, response)
            return quote_response(engine, response)
        finally:
            await response.aclose()

    async def discover(self, origin: httpx.URL | str, **options: Any) -> Discovery:
        """The async twin of :meth:`Client.discover`. Advisory only: the 402 always wins."""
        from ._flow._discover import DiscoveryBody, discovery_url  # noqa: PLC0415 - on use

        request = self._unpaid_request("GET", discovery_url(origin), options)
        response = await self.send(request, stream=True)
        try:
            body = DiscoveryBody(response)
            async for chunk in response.aiter_bytes():
                body.add(chunk)
        finally:
            await response.aclose()
        return body.document()
