"""Discovery: ``x-payment-info`` in ``/openapi.json``, read strictly, trusted never.

The parser is pure and table-tested; ``client.discover(origin)`` is tested
sync and async over a real loopback socket, against documents written by
mppx's own discovery generator (run with ``node``) and by hand; and the 402
challenge is shown to win over whatever discovery advertised.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_client import (
    AsyncClient,
    Client,
    DevWallet,
    Discovery,
    DiscoveryError,
    SimplePolicy,
    payment_record,
)
from mpp_client.protocol import MAX_DISCOVERY_BYTES, parse_discovery
from mpp_client.testing import PaidServer

from .apps import respond
from .peers.mppx_peer import ROOT, node_tools

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def document(**paths: Any) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "Shop", "version": "1.0"}, "paths": paths}


def op(info: Any, **extra: Any) -> dict[str, Any]:
    return {"x-payment-info": info, "responses": {"402": {"description": "pay"}}, **extra}


OFFER = {"intent": "charge", "method": "dev", "amount": "25", "currency": "usd"}


# -- the parser ---------------------------------------------------------------------------


def test_both_forms_every_field_and_unpriced_operations_skipped() -> None:
    doc = document(
        **{
            "/weather": {"get": op(OFFER, summary="Weather", operationId="weather")},
            "/report": {
                "post": op(
                    {
                        "offers": [
                            {**OFFER, "amount": "200"},
                            {
                                "intent": "session",
                                "method": "tempo",
                                "amount": None,
                                "currency": "0x20c0000000000000000000000000000000000000",
                                "description": "varies by size",
                                "vendorExtra": {"ignored": True},
                            },
                        ]
                    }
                ),
                "get": {"responses": {}},
            },
            "/free": {"get": {"summary": "no price"}},
        }
    )
    doc["x-service-info"] = {"categories": ["data"], "docs": {"llms": "https://x.test/llms.txt"}}
    found = parse_discovery(json.dumps(doc).encode())
    assert (found.title, found.version, found.openapi) == ("Shop", "1.0", "3.1.0")
    assert found.categories == ("data",) and found.docs == {"llms": "https://x.test/llms.txt"}
    weather, report = found.operations
    assert (weather.path, weather.http_method, weather.summary) == ("/weather", "GET", "Weather")
    assert weather.operation_id == "weather"
    assert [(o.key, o.amount, o.currency) for o in weather.offers] == [("dev/charge", 25, "usd")]
    assert report.http_method == "POST"
    dev, tempo = report.offers
    assert dev.amount == 200 and tempo.amount is None and tempo.intent == "session"
    assert tempo.description == "varies by size"
    assert found.to_dict()["operations"][1]["offers"][1]["amount"] is None


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b"{not json", "not valid JSON"),
        (b'{"openapi": "3.1.0", "openapi": "3.0.0"}', "duplicate key"),
        (b"\xff\xfe", "not UTF-8"),
        ({"openapi": "2.0", "info": {"title": "a", "version": "1"}}, "openapi"),
        ({"openapi": "3.1.0", "info": {"title": "a"}}, "info.version: missing"),
        ({"openapi": "3.1.0", "info": {"title": 1, "version": "1"}}, "info.title"),
        ({**document(), "paths": []}, "paths: not an object"),
        (document(**{"/a": []}), "paths./a: not an object"),
        (document(**{"/a": {"get": "x"}}), "paths./a.get: not an object"),
        (document(**{"/a": {"get": op([OFFER])}}), "x-payment-info: not an object"),
        (document(**{"/a": {"get": op({**OFFER, "amount": 25})}}), "amount"),
        (document(**{"/a": {"get": op({**OFFER, "amount": "025"})}}), "amount"),
        (document(**{"/a": {"get": op({**OFFER, "amount": "-1"})}}), "amount"),
        (document(**{"/a": {"get": op({**OFFER, "method": "Tempo"})}}), ".method"),
        (document(**{"/a": {"get": op({**OFFER, "method": None})}}), ".method"),
        (document(**{"/a": {"get": op({**OFFER, "intent": "a b"})}}), ".intent"),
        (document(**{"/a": {"get": op({**OFFER, "currency": ""})}}), ".currency: empty"),
        (document(**{"/a": {"get": op({**OFFER, "currency": 840})}}), ".currency"),
        (document(**{"/a": {"get": op({"offers": []})}}), "offers: not a non-empty array"),
        (document(**{"/a": {"get": op({"offers": [OFFER], **OFFER})}}), "cannot be mixed"),
        (document(**{"/a": {"get": op({"offers": [OFFER, 3]})}}), "offers[1]: not an object"),
        (document(**{"/a": {"get": op({"offers": [OFFER] * 65})}}), "more than 64 offers"),
        (document(**{"/a": {"get": op({**OFFER, "description": "x" * 1001})}}), "longer than"),
        ({**document(), "x-service-info": {"categories": "data"}}, "categories"),
        ({**document(), "x-service-info": {"docs": {"llms": 3}}}, "docs.llms"),
    ],
)
def test_malformed_documents_are_typed_errors_naming_the_place(doc: Any, where: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse_discovery(doc)
    assert where in caught.value.message


def test_oversized_documents_are_refused_unread() -> None:
    with pytest.raises(DiscoveryError, match="over"):
        parse_discovery(b" " * (MAX_DISCOVERY_BYTES + 1))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    info=JSON,
    offers=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "method": st.sampled_from(["dev", "Tempo", "", "x402"]) | JSON,
                "intent": st.sampled_from(["charge", "session"]) | JSON,
                "amount": st.sampled_from(["0", "25", "007"]) | JSON,
                "currency": JSON,
                "description": JSON,
            },
        ),
        max_size=3,
    ),
)
def test_any_input_parses_or_is_a_discovery_error(info: Any, offers: list[Any]) -> None:
    for payment in (info, {"offers": offers}, offers[0] if offers else {}):
        doc = document(**{"/a": {"post": op(payment)}})
        try:
            found = parse_discovery(json.dumps(doc).encode())
        except DiscoveryError:
            continue
        assert isinstance(found, Discovery)
        # null x-payment-info is no price at all; anything else parsed has offers.
        assert len(found.operations) == (payment is not None)
        for operation in found.operations:
            assert operation.offers
            assert all(o.amount is None or o.amount >= 0 for o in operation.offers)


# -- the client, over a real socket ---------------------------------------------------------


class Published:
    """``/openapi.json`` as given, everything else sold by a ``PaidServer``."""

    def __init__(self, body: bytes, server: PaidServer, *, status: int = 200) -> None:
        self.body = body
        self.server = server
        self.status = status
        self.chunked = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/openapi.json":
            if not self.chunked:
                await respond(send, self.status, [("content-type", "application/json")], self.body)
                return
            # No Content-Length: the client must stop reading by itself.
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            for start in range(0, len(self.body), 64 * 1024):
                chunk = self.body[start : start + 64 * 1024]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.server(scope, receive, send)


def discover(mode: str, origin: str, **kwargs: Any) -> Discovery:
    if mode == "sync":
        with Client(**kwargs) as client:
            return client.discover(origin)

    async def run() -> Discovery:
        async with AsyncClient(**kwargs) as client:
            return await client.discover(origin)

    return asyncio.run(run())


def mppx_document(config: dict[str, Any]) -> bytes:
    """A discovery document written by mppx 0.11's own generator (``generateProxy``)."""
    script = (
        "import * as D from 'mppx/discovery';"
        "process.stdout.write(JSON.stringify(D.generateProxy(JSON.parse(process.argv[1]))));"
    )
    result = subprocess.run(
        [node_tools(), "--input-type=module", "-e", script, json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return result.stdout


MPPX_ROUTES = {
    "info": {"title": "Weather", "version": "2.1"},
    "serviceInfo": {"categories": ["data"], "docs": {"llms": "/llms.txt"}},
    "routes": [
        {
            "method": "GET",
            "path": "/paid",
            "summary": "Today's weather",
            "payment": {"intent": "charge", "method": "dev", "amount": "1", "currency": "usd"},
        },
        {
            "method": "POST",
            "path": "/report",
            "payment": {
                "offers": [
                    {
                        "intent": "charge",
                        "method": "tempo",
                        "amount": None,
                        "currency": "0x20c0000000000000000000000000000000000000",
                        "description": "priced per request",
                    },
                    {"intent": "charge", "method": "dev", "amount": "200", "currency": "usd"},
                ]
            },
        },
        {"method": "GET", "path": "/free"},
    ],
}


@MODES
def test_discover_reads_what_mppx_publishes(mode: str, live: Any) -> None:
    body = mppx_document(MPPX_ROUTES)
    origin = live(Published(body, PaidServer({"/paid": "0.25 USD"})))
    found = discover(mode, origin + "/some/page?q=1")  # any URL on the origin

    assert (found.title, found.version, found.categories) == ("Weather", "2.1", ("data",))
    assert found.docs == {"llms": "/llms.txt"}
    paid, report = found.operations
    assert (paid.http_method, paid.path, paid.summary) == ("GET", "/paid", "Today's weather")
    assert [(o.key, o.amount) for o in paid.offers] == [("dev/charge", 1)]
    assert [(o.key, o.amount) for o in report.offers] == [
        ("tempo/charge", None),
        ("dev/charge", 200),
    ]


@MODES
def test_the_402_challenge_wins_over_what_discovery_advertised(mode: str, live: Any) -> None:
    # Discovery says 0.01 USD; the server's challenge asks 0.25 USD, and that is what is decided.
    server = PaidServer({"/paid": "0.25 USD"})
    origin = live(Published(mppx_document(MPPX_ROUTES), server))
    kwargs: dict[str, Any] = {
        "base_url": origin,
        "methods": [DevWallet()],
        "policy": SimplePolicy(max_per_call="0.05 USD"),
        "allow_insecure_localhost": True,
    }
    advertised = discover(mode, origin, **kwargs)
    assert advertised.operations[0].offers[0].amount == 1
    with Client(**kwargs) as client:
        result = client.quote("/paid")
        assert not result.would_pay
        assert str(result.offers[0].amount) == "0.25 USD"
    with Client(**{**kwargs, "policy": SimplePolicy(max_per_call="0.50 USD")}) as client:
        record = payment_record(client.get("/paid"))
    assert record is not None and str(record.amount) == "0.25 USD"
    assert [str(p.amount) for p in server.payments] == ["0.25 USD"]


@MODES
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_document_is_refused_while_reading(
    mode: str, chunked: bool, live: Any
) -> None:
    app = Published(b"[" + b"0," * MAX_DISCOVERY_BYTES + b"0]", PaidServer())
    app.chunked = chunked
    with pytest.raises(DiscoveryError, match="over") as caught:
        discover(mode, live(app))
    assert caught.value.response is not None


@MODES
def test_a_missing_or_malformed_document_is_a_discovery_error(mode: str, live: Any) -> None:
    with pytest.raises(DiscoveryError, match="HTTP 404") as caught:
        discover(mode, live(Published(b"{}", PaidServer(), status=404)))
    assert caught.value.response is not None and caught.value.response.status_code == 404
    bad = json.dumps(document(**{"/a": {"get": op({**OFFER, "amount": 1})}})).encode()
    with pytest.raises(DiscoveryError, match=r"paths\./a\.get\.x-payment-info\.amount"):
        discover(mode, live(Published(bad, PaidServer())))


@MODES
def test_discovery_never_pays_even_when_the_document_is_priced(mode: str, live: Any) -> None:
    server = PaidServer({"/openapi.json": "0.25 USD"})
    with pytest.raises(DiscoveryError, match="HTTP 402"):
        discover(
            mode,
            live(server),
            methods=[DevWallet()],
            policy=SimplePolicy(max_per_call="1.00 USD"),
            allow_insecure_localhost=True,
        )
    assert server.payments == []
