"""The policy document: what an owner allows an agent to spend.

Written in TOML or JSON, amounts like ``"2.50 USD"``, durations like
``"15m"``, ``"24h"`` or ``"30d"``. Validation is strict (unknown keys are
errors: a misspelt rule must not silently be no rule) and every refusal the
engine makes names the setting that caused it.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .._decision import program_scope
from .._exceptions import PolicyError
from ..identity import AgentKey
from ..mandate import Mandate, Revocations
from ..money import BUILTIN_ASSETS, Amount, AssetEntry, AssetRegistry, MoneyError
from ..protocol import parse_rfc3339
from ._base import Decision, PaymentContext, SpendPolicy

__all__ = [
    "Anomaly",
    "Approval",
    "AssetSpec",
    "Budget",
    "CircuitBreaker",
    "Lists",
    "Override",
    "Policy",
    "PolicyError",
    "Signing",
    "Velocity",
]


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is not None and any(match.groups()):
            days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f'durations are written like "90s", "15m", "24h", "30d", not {value!r:.40}')


def _amount(value: Any) -> Amount:
    try:
        return Amount.coerce(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


def _ratio(value: Any) -> Fraction:
    """A multiplier like ``5`` or ``"2.5"``: exact, never a float."""
    if isinstance(value, bool | float):
        raise ValueError('write ratios as integers or strings (e.g. 3 or "2.5"), not floats')
    try:
        # Fraction text takes "3", "2.5" and the "5/2" that to_dict() writes.
        ratio = Fraction(str(value))
    except ValueError:
        raise ValueError(f"not a ratio: {value!r:.40}") from None
    if ratio <= 1:
        raise ValueError("the anomaly factor must be greater than 1")
    return ratio


def _rfc3339(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("times need a time zone")
        return value
    if isinstance(value, str):
        return parse_rfc3339(value)
    raise ValueError("times are RFC 3339 strings")


Money = Annotated[Amount, BeforeValidator(_amount), PlainSerializer(str, return_type=str)]
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(lambda d: f"{int(d.total_seconds())}s", return_type=str),
]
Ratio = Annotated[Fraction, BeforeValidator(_ratio), PlainSerializer(str, return_type=str)]
Moment = Annotated[
    datetime, BeforeValidator(_rfc3339), PlainSerializer(lambda d: d.isoformat(), return_type=str)
]
Tags = dict[str, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Lists(_Strict):
    """Allow or deny lists. ``"*"`` matches anything; hosts also take ``"*.example.com"``."""

    hosts: tuple[str, ...] = ()
    realms: tuple[str, ...] = ()
    payees: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()
    chain_ids: tuple[int | Literal["*"], ...] = ()


class Budget(_Strict):
    """A spending limit over a window, for everything or one payee or method.

    ``window`` is rolling (the last 24 hours); ``calendar`` resets at the start
    of each day, week (Monday) or month in the policy's time zone; neither
    means a lifetime budget. ``when`` limits it to calls carrying those tags.
    """

    name: str
    limit: Money
    window: Duration | None = None
    calendar: Literal["day", "week", "month"] | None = None
    payee: str | None = None
    method: str | None = None
    when: Tags = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_window(self) -> Budget:
        if self.window is not None and self.calendar is not None:
            raise ValueError(f"budget {self.name!r}: give a rolling window or a calendar period")
        return self


class Velocity(_Strict):
    """At most ``max`` payments per ``window``, overall or per payee."""

    name: str = "rate"
    max: int = Field(ge=1)
    window: Duration
    per_payee: bool = False
    when: Tags = Field(default_factory=dict)


class Approval(_Strict):
    """Ask a human above ``above``, or for a payee never paid before."""

    above: Money | None = None
    new_payee: bool = False
    timeout: Duration = timedelta(seconds=60)


class Anomaly(_Strict):
    """A payment over ``factor`` times the median of the last ``history``
    payments to the same payee (once ``min_history`` exist) is suspicious."""

    factor: Ratio
    history: int = Field(default=10, ge=1)
    min_history: int = Field(default=3, ge=1)
    action: Literal["approve", "deny"] = "approve"

    @model_validator(mode="after")
    def _reachable(self) -> Anomaly:
        if self.min_history > self.history:
            raise ValueError(
                "anomaly.min_history cannot exceed anomaly.history (the rule would never run)"
            )
        return self


class CircuitBreaker(_Strict):
    """After ``failures`` paid-then-failed calls in a row to a payee, stop
    paying it for ``cooldown``."""

    failures: int = Field(default=3, ge=1)
    cooldown: Duration = timedelta(minutes=10)


class Override(_Strict):
    """Different caps for calls carrying all of the ``when`` tags."""

    when: Tags
    per_call: Money | None = None
    per_payee: dict[str, Money] = Field(default_factory=dict)

    @field_validator("when")
    @classmethod
    def _not_empty(cls, value: Tags) -> Tags:
        if not value:
            raise ValueError("an override needs at least one tag in 'when'")
        return value


class Signing(_Strict):
    """Where the key that authorises a payment must live: above
    ``hardware_above``, only a hardware-held key may sign (see docs/keys.md)."""

    hardware_above: Money | None = None


class AssetSpec(_Strict):
    """A registry entry: ``currency`` paid via ``method`` (on ``chain_id``) is
    worth ``asset``, with ``decimals`` digits in its base unit."""

    method: str
    currency: str
    asset: str
    decimals: int = Field(ge=0, le=36)
    chain_id: int | None = None
    name: str = ""


class Policy(_Strict, SpendPolicy):
    """A delegated spending policy: the document the owner writes, and its rules.

    Load it with :meth:`from_file` (TOML or JSON), :meth:`from_toml`,
    :meth:`from_json`, :meth:`from_mapping`, or from a signed mandate. Deny by
    default: a payment is refused unless its host, realm, payee, method,
    intent and asset (and chain id, when it has one) are each named in
    ``allow`` (``"*"`` allows any) and none is named in ``deny``; unknown
    assets are refused; every refusal names its rule.

    Budgets and rates count the payments of one ``scope`` (see
    :attr:`budget_scope`): the one named in the document, else the mandate's
    id for a policy from a mandate, else the running program.
    """

    _registry: AssetRegistry = PrivateAttr()
    _zone: ZoneInfo = PrivateAttr()
    _mandate: Mandate | None = PrivateAttr(default=None)
    _scope: str = PrivateAttr(default="")

    version: Literal[1] = 1
    currency: str
    timezone: str = "UTC"
    mode: Literal["enforce", "dry-run", "shadow"] = "enforce"
    #: Whose budgets these are: a name shared on purpose by the programs (a
    #: fleet) that spend them. None: the mandate's id, else the running program.
    scope: str | None = None
    not_before: Moment | None = None
    expires: Moment | None = None
    max_challenge_validity: Duration | None = None
    per_call: Money
    per_payee: dict[str, Money] = Field(default_factory=dict)
    budgets: tuple[Budget, ...] = ()
    allow: Lists = Field(default_factory=Lists)
    deny: Lists = Field(default_factory=Lists)
    velocity: tuple[Velocity, ...] = ()
    approval: Approval | None = None
    anomaly: Anomaly | None = None
    circuit_breaker: CircuitBreaker | None = None
    signing: Signing | None = None
    overrides: tuple[Override, ...] = ()
    assets: tuple[AssetSpec, ...] = ()
    builtin_assets: bool = True

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_currency(self) -> Policy:
        amounts: list[tuple[str, Amount | None]] = [("per_call", self.per_call)]
        amounts += [(f"per_payee[{k!r}]", v) for k, v in self.per_payee.items()]
        amounts += [(f"budget {b.name!r}", b.limit) for b in self.budgets]
        amounts.append(("approval.above", self.approval.above if self.approval else None))
        amounts.append(
            ("signing.hardware_above", self.signing.hardware_above if self.signing else None)
        )
        for override in self.overrides:
            amounts.append((f"override {override.when}", override.per_call))
            amounts += [(f"override per_payee[{k!r}]", v) for k, v in override.per_payee.items()]
        for where, amount in amounts:
            if amount is not None and amount.currency != self.currency:
                raise ValueError(
                    f"{where} is in {amount.currency}; this policy counts in {self.currency}"
                )
        names = [b.name for b in self.budgets]
        if len(names) != len(set(names)):
            raise ValueError("budget names must be unique")
        if self.not_before and self.expires and self.expires <= self.not_before:
            raise ValueError("expires must come after not_before")
        return self

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Any) -> Policy:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(_explain(exc)) from None

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy is not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"policy is not valid JSON: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """Load ``.toml`` or ``.json``."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return cls.from_json(text)
        return cls.from_toml(text)

    @classmethod
    def from_mandate(
        cls,
        mandate: Mandate,
        *,
        owner_keys: Iterable[str],
        agent: AgentKey | str,
        now: datetime | None = None,
        revoked: Revocations | Iterable[str] | None = None,
    ) -> Policy:
        """The policy inside a signed mandate, once the mandate checks out.

        The mandate must be signed by one of ``owner_keys`` (their dids), be
        issued to ``agent``, be within its validity window and not revoked;
        otherwise a :class:`~mpp_client.MandateError` says which check failed.
        The policy's own validity is narrowed to the mandate's.
        """
        mandate.verify(
            owner_keys=owner_keys, agent=agent, now=now or datetime.now(UTC), revoked=revoked
        )
        policy = cls.from_mapping(mandate.policy)
        not_before = max(filter(None, (policy.not_before, mandate.not_before)))
        expires = min(filter(None, (policy.expires, mandate.expires_at)))
        narrowed = policy.model_copy(update={"not_before": not_before, "expires": expires})
        narrowed._mandate = mandate
        narrowed._scope = policy.scope if policy.scope is not None else f"mandate:{mandate.id}"
        return narrowed

    @property
    def mandate(self) -> Mandate | None:
        """The mandate this policy was loaded from, if any."""
        return self._mandate

    @property
    def budget_scope(self) -> str:
        """The scope its budgets and rates count in (see :class:`Policy`)."""
        return self._scope

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (amounts and durations as strings), e.g. for a mandate."""
        return self.model_dump(mode="json", exclude_defaults=True)

    # -- deciding --------------------------------------------------------------------

    def model_post_init(self, context: Any, /) -> None:
        entries = list(BUILTIN_ASSETS) if self.builtin_assets else []
        entries += [
            AssetEntry(a.method, a.currency, a.asset.upper(), a.decimals, a.chain_id, a.name)
            for a in self.assets
        ]
        self._registry = AssetRegistry(entries)
        self._zone = ZoneInfo(self.timezone)
        self._scope = self.scope if self.scope is not None else program_scope()

    @property
    def registry(self) -> AssetRegistry:
        return self._registry

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def decide(self, context: PaymentContext) -> Decision:
        from ._engine import decide  # noqa: PLC0415 - the engine imports this module

        return decide(self, context)


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "policy"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "invalid policy: " + "; ".join(problems) + more
