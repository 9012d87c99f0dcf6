"""Event hooks and OpenTelemetry: what the flow tells the outside world, on both drivers.

The hooks are the user's code and must never break a payment; the telemetry
is checked with the OpenTelemetry SDK's in-memory exporter and reader (real
SDK, no collector). Sync runs over a real loopback socket, async through the
ASGI transport.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mpp_client import (
    AsyncClient,
    Client,
    DevWallet,
    PaymentError,
    PaymentOutcomeUnknown,
    PaymentRecord,
    PolicyDenied,
    SimplePolicy,
)
from mpp_client.testing import PaidServer

from .apps import Recorder

POLICY = SimplePolicy(max_per_call="1.00 USD", budget="10.00 USD")


class Collected:
    """What the hooks were called with."""

    def __init__(self) -> None:
        self.payments: list[PaymentRecord] = []
        self.refusals: list[PaymentError] = []
        self.unknown: list[PaymentOutcomeUnknown] = []

    def hooks(self, flavour: str) -> dict[str, Any]:
        if flavour == "sync":
            return {
                "on_payment": self.payments.append,
                "on_refusal": self.refusals.append,
                "on_unknown": self.unknown.append,
            }

        async def on_payment(record: PaymentRecord) -> None:
            await asyncio.sleep(0)
            self.payments.append(record)

        async def on_refusal(error: PaymentError) -> None:
            self.refusals.append(error)

        async def on_unknown(error: PaymentOutcomeUnknown) -> None:
            self.unknown.append(error)

        return {"on_payment": on_payment, "on_refusal": on_refusal, "on_unknown": on_unknown}


def request(driver: str, app: Any, live: Any, path: str, **client: Any) -> httpx.Response:
    """GET ``path`` from ``app`` through the sync (real socket) or async (ASGI) driver."""
    client.setdefault("methods", [DevWallet()])
    client.setdefault("policy", POLICY)
    client.setdefault("ledger", "memory:")
    if driver == "sync":
        with Client(base_url=live(app), allow_insecure_localhost=True, **client) as sync:
            return sync.get(path)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="https://shop.test", **client) as c:
            return await c.get(path)

    return asyncio.run(run())


DRIVERS = ["sync", "async"]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_on_payment_gets_the_committed_record(live: Any, driver: str, flavour: str) -> None:
    seen = Collected()
    response = request(
        driver, PaidServer({"/paid": "0.25 USD"}), live, "/paid", **seen.hooks(flavour)
    )
    assert response.status_code == 200
    (record,) = seen.payments
    assert record.status == "committed" and record is response.extensions["mpp"]
    assert seen.refusals == [] and seen.unknown == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_on_refusal_gets_the_policy_refusal(live: Any, driver: str) -> None:
    seen = Collected()
    with pytest.raises(PolicyDenied) as caught:
        request(driver, PaidServer({"/dear": "5.00 USD"}), live, "/dear", **seen.hooks("sync"))
    assert seen.refusals == [caught.value]
    assert seen.payments == [] and seen.unknown == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_on_unknown_gets_the_outcome_unknown(live: Any, driver: str) -> None:
    server = PaidServer({"/paid": "0.25 USD"})

    async def breaks_after_payment(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers", ()))
        if scope["type"] == "http" and b"authorization" in headers:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"boom"})
            return
        await server(scope, receive, send)

    seen = Collected()
    with pytest.raises(PaymentOutcomeUnknown) as caught:
        request(driver, breaks_after_payment, live, "/paid", **seen.hooks("sync"))
    assert seen.unknown == [caught.value]
    assert seen.payments == [] and seen.refusals == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_hook_that_raises_never_breaks_the_payment(
    live: Any, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(_: Any) -> None:
        raise RuntimeError("hook bug")

    server = PaidServer({"/paid": "0.25 USD"})
    response = request(driver, server, live, "/paid", on_payment=explode)
    assert response.status_code == 200
    record = response.extensions["mpp"]
    assert record.status == "committed"
    assert len(server.payments) == 1
    assert "an mpp event hook failed: RuntimeError" in caplog.text


def test_unpaid_requests_call_no_hook(live: Any) -> None:
    seen = Collected()

    async def free(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"free"})

    assert request("sync", free, live, "/", **seen.hooks("sync")).status_code == 200
    assert (seen.payments, seen.refusals, seen.unknown) == ([], [], [])


# -- OpenTelemetry ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def otel() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """The SDK's in-memory exporter and reader as the global providers (set once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_paid_request_is_a_span_with_a_child_per_step(
    live: Any, driver: str, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    exporter, _ = otel
    exporter.clear()
    recorder = Recorder(PaidServer({"/paid": "0.25 USD"}))
    response = request(driver, recorder, live, "/paid", telemetry=True)
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "mpp.payment"]
    children = [
        s.name for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id
    ]
    assert children == ["mpp.decide", "mpp.pay", "mpp.retry", "mpp.settle"]
    attributes = dict(root.attributes or {})
    assert attributes["mpp.outcome"] == "paid"
    assert attributes["mpp.amount"] == "0.25 USD"
    assert attributes["mpp.payee"] == "merchant-1"
    assert attributes["mpp.method"] == "dev"
    # No credential in any attribute of any span.
    credential = recorder.seen[-1].headers["authorization"]
    secret = credential.split(" ", 1)[1]
    for span in spans:
        for value in (span.attributes or {}).values():
            assert secret not in str(value) and "Payment " not in str(value)


def test_metrics_count_spend_refusals_by_rule_and_latency(
    live: Any, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    _, reader = otel
    reader.get_metrics_data()  # start from here
    before_paid = sum(p.value for p in _points(reader, "mpp.payments"))
    server = PaidServer({"/paid": "0.25 USD", "/dear": "5.00 USD"})
    with Client(
        base_url=live(server),
        methods=[DevWallet()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
        telemetry=True,
    ) as client:
        assert client.get("/paid").status_code == 200
        with pytest.raises(PolicyDenied):
            client.get("/dear")
    payments = _points(reader, "mpp.payments")
    assert sum(p.value for p in payments) >= before_paid + 1
    spend = [
        p for p in _points(reader, "mpp.spend") if p.attributes.get("mpp.payee") == "merchant-1"
    ]
    assert spend and all(p.attributes["mpp.currency"] == "USD" for p in spend)
    assert any(p.value >= 25 and p.attributes["mpp.decimals"] == 2 for p in spend)
    refusals = _points(reader, "mpp.refusals")
    assert any(p.attributes.get("mpp.rule") == "max_per_call" for p in refusals), [
        p.attributes for p in refusals
    ]
    durations = _points(reader, "mpp.payment.duration")
    assert sum(p.count for p in durations) >= 2


def test_hook_failures_are_logged_by_type_only(caplog: pytest.LogCaptureFixture) -> None:
    from mpp_client._flow._observe import Hooks, Observer

    caplog.set_level(logging.WARNING)

    def leaky(_: Any) -> None:
        raise ValueError("secret-token-value")

    observer = Observer(Hooks(on_refusal=leaky), telemetry=False)
    observer.notify_sync(None, PolicyDenied("no"))
    assert "ValueError" in caplog.text and "secret-token-value" not in caplog.text
