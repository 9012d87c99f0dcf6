"""The shape of the package: which room may import which, and the public surface.

Rooms own one concern (DESIGN.md): the wire format does no I/O; the policy,
the ledger and the wallets are siblings that never import each other (the
words they share live below all three); the flow sits above them; nothing at
runtime imports the testing helpers. These tests read every module's imports
with ``ast`` (nothing is executed) and fail with the offending file and line.

Imports under ``if TYPE_CHECKING:`` are not runtime edges; they may point
down or across the layer below, but never to a sibling room.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mpp_client

PACKAGE = Path(mpp_client.__file__).resolve().parent

#: Layers, lowest first. A room may import rooms of lower layers only; rooms of
#: one layer are siblings and never import each other. Within the "words"
#: layer modules may use each other (they are the vocabulary), without cycles.
LAYERS: list[set[str]] = [
    {"_version", "_lazy", "_text", "_headers", "_didkey", "money", "_exceptions", "_decision"},
    {"protocol"},
    {"identity"},
    {"mandate"},
    {"policy", "ledger", "methods"},
    {"_flow"},
    {"auth"},
    {"client"},
    {"__init__", "testing", "integrations", "cli"},
]
WORDS = LAYERS[0]
#: Rooms whose modules must do no I/O: no sockets, files, clocks or threads.
PURE = {"protocol"}
IO_MODULES = {"socket", "httpx", "httpcore", "os", "io", "threading", "time", "asyncio", "anyio"}


def _layer(room: str) -> int:
    for index, rooms in enumerate(LAYERS):
        if room in rooms:
            return index
    raise AssertionError(f"room {room!r} is not in the layer table of this test: add it")


def _room(module: str) -> str:
    """``mpp_client.policy._engine`` -> ``policy``; ``mpp_client`` -> ``__init__``."""
    parts = module.split(".")
    assert parts[0] == "mpp_client"
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_only: bool
    where: str


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement, and whether it only runs for the type checker."""

    def walk(node: ast.AST, type_only: bool) -> Iterator[tuple[ast.stmt, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk_stmt(stmt, True)
                for stmt in child.orelse:
                    yield from walk_stmt(stmt, type_only)
            else:
                yield from walk_stmt(child, type_only)

    def walk_stmt(node: ast.AST, type_only: bool) -> Iterator[tuple[ast.stmt, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_only
        else:
            yield from walk(node, type_only)

    yield from walk(tree, False)


def _edges() -> list[Edge]:
    edges: list[Edge] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, type_only in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                target = _resolve(module, path.name == "__init__.py", node)
                # ``from . import x`` names submodules: each is a target.
                targets = [target]
                if target.split(".")[-1] == module.split(".")[-1] or target == "mpp_client":
                    targets = [f"{target}.{alias.name}" for alias in node.names]
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            edges.extend(Edge(module, t, node.lineno, type_only, where) for t in targets)
    return edges


EDGES = _edges()
INTERNAL = [e for e in EDGES if e.target.split(".")[0] == "mpp_client"]


def _layering_violations(edges: list[Edge]) -> list[str]:
    wrong = []
    for edge in edges:
        source, target = _room(edge.source), _room(edge.target)
        if source == target or edge.type_only:
            continue
        low, high = _layer(target), _layer(source)
        if low < high or (source in WORDS and target in WORDS):
            continue
        kind = "a sibling" if low == high else "a room above it"
        wrong.append(f"{edge.where}: {source} imports {kind}, {target} ({edge.target})")
    return wrong


def test_every_room_imports_only_rooms_below_it() -> None:
    assert len(INTERNAL) > 100  # the reader found the package's imports
    wrong = _layering_violations(INTERNAL)
    assert wrong == [], "\n".join(wrong)


def test_type_only_imports_never_reach_a_sibling_room() -> None:
    wrong = []
    for edge in INTERNAL:
        source, target = _room(edge.source), _room(edge.target)
        if not edge.type_only or source == target:
            continue
        if _layer(source) == _layer(target) and source not in WORDS:
            wrong.append(f"{edge.where}: {source} names sibling {target} even for types")
    assert wrong == [], "\n".join(wrong)


def test_nothing_at_runtime_imports_the_testing_helpers() -> None:
    wrong = [
        f"{e.where}: {e.source} imports {e.target}"
        for e in INTERNAL
        if _room(e.target) == "testing" and _room(e.source) != "testing" and not e.type_only
    ]
    assert wrong == [], "\n".join(wrong)


def test_the_words_import_nothing_above_them_and_have_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for edge in INTERNAL:
        source, target = _room(edge.source), _room(edge.target)
        if source in WORDS and target in WORDS and source != target and not edge.type_only:
            graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(room for room in graph if reaches(room, room, {room}))
    assert cycles == [], f"the words import each other in a cycle: {cycles}"


def test_the_wire_format_does_no_io() -> None:
    wrong = [
        f"{e.where}: {e.source} imports {e.target}"
        for e in EDGES
        if _room(e.source) in PURE and e.target.split(".")[0] in IO_MODULES
    ]
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        ("mpp_client.policy._engine", "mpp_client.ledger", "a sibling"),
        ("mpp_client.ledger._base", "mpp_client.policy", "a sibling"),
        ("mpp_client.methods.evm", "mpp_client.policy", "a sibling"),
        ("mpp_client.protocol._terms", "mpp_client.methods", "a room above it"),
        ("mpp_client.money", "mpp_client.policy", "a room above it"),
    ],
)
def test_the_checker_itself_catches_what_the_layout_forbids(
    source: str, target: str, words: str
) -> None:
    """A check that cannot fail is a defect: feed it imports this layout forbids."""
    (problem,) = _layering_violations([Edge(source, target, 1, False, "synthetic:1")])
    assert words in problem
    assert _layering_violations([Edge(source, target, 1, True, "synthetic:1")]) == []


# -- the public surface -------------------------------------------------------------------

#: What ``import mpp_client`` promises. Adding a name is a decision (and a
#: CHANGELOG line); removing one breaks users and needs a deprecation first.
PUBLIC = {
    # quotes and discovery (issue 12)
    "DiscoveredOffer",
    "Discovery",
    "DiscoveryError",
    "PricedOperation",
    "QuoteResult",
    "QuotedOffer",
    "AgentKey",
    "Amount",
    "ApprovalRequest",
    "ApprovalRequired",
    "AsyncClient",
    "BudgetExceeded",
    "Challenge",
    "ChallengeError",
    "ChallengeExpired",
    "ChallengeReused",
    "Client",
    "Credential",
    "Decision",
    "DevWallet",
    "InsecureTransport",
    "KeystoreError",
    "Ledger",
    "LedgerIntegrityError",
    "Limit",
    "Mandate",
    "MandateAgentMismatch",
    "MandateError",
    "MandateExpired",
    "MandateNotYetValid",
    "MandateOwnerUntrusted",
    "MandateRevoked",
    "MandateSignatureInvalid",
    "MemoryLedger",
    "MoneyError",
    "NoAcceptableChallenge",
    "OwnerKey",
    "PaymentAuth",
    "PaymentContext",
    "PaymentError",
    "PaymentFailed",
    "PaymentMethod",
    "PaymentOutcomeUnknown",
    "PaymentRecord",
    "PaymentRejected",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "Problem",
    "ProtocolError",
    "Quote",
    "Receipt",
    "Revocations",
    "RevocationsInvalid",
    "RuleResult",
    "SignerError",
    "SimplePolicy",
    "SpendPolicy",
    "TermsExpired",
    "TermsRefused",
    "__version__",
    "charge_terms",
    "load_mandate",
    "parse_challenges",
    "payment_decision",
    "payment_record",
    "sign_record",
    "verify_record",
    "verify_signature",
}


def test_the_public_surface_is_exactly_what_is_promised() -> None:
    exported = set(mpp_client.__all__)
    assert exported - PUBLIC == set(), "new public names: add them here and to the CHANGELOG"
    assert PUBLIC - exported == set(), "public names removed: deprecate them first"
    for name in exported:
        assert getattr(mpp_client, name) is not None, name


def test_every_public_error_is_a_payment_error() -> None:
    errors = [
        getattr(mpp_client, n)
        for n in mpp_client.__all__
        if isinstance(getattr(mpp_client, n), type)
        and issubclass(getattr(mpp_client, n), Exception)
        and n != "MoneyError"  # a ValueError for malformed amounts, raised before any flow
    ]
    assert errors
    assert all(issubclass(e, mpp_client.PaymentError) for e in errors)
