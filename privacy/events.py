"""DP events: immutable descriptions of the privacy mechanism behind each release.

Owns the event family and its two wire forms; protects ARCHITECTURE.md invariant 5 (an event says
exactly what was released, so epsilon can be recomputed from a ledger and never under-reported) and
invariant 7 (an event written into a signed ledger entry keeps its meaning forever).

Modelled on Google's dp_accounting `DpEvent` (https://github.com/google/differential-privacy/tree/main/python/
dp_accounting, dp_event.py): an event says *what noise was added to what* and nothing else.

Neighbouring relation everywhere: add/remove one contributor (a person), ARCHITECTURE.md invariant 4.
`sensitivity` is how much one contributor can move the query: L2 for Gaussians, L1 for Laplaces.

One family: every event is a frozen dataclass deriving from `DpEvent` and registered under its wire name
(`@register("gaussian")`), which is both its key in the dict form and its field in the `DpEvent` oneof of
`protos/events.proto`. The dict and protobuf conversions are generic, driven by each class's dataclass fields:
a float or int field is a scalar, a `DpEvent` field a nested event, a `tuple[DpEvent, ...]` field a list of
events. Dict form (JSON-able, the protobuf's field names): {"gaussian": {"sigma": 2.0, "sensitivity": 1.0}}.

`dpsgd_event` / `dpsgd_params` at the bottom are THE builder and reader of the DP-SGD event.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar, TypeVar

from privacy.ddg_rules import violation as ddg_violation
from protos import events_pb2


class EventError(ValueError):
    """An event's parameters are invalid (the message names the field)."""


# --- field checks (each names the field it refuses) -----------------------------------------------


def _positive_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise EventError(f"{name} must be finite and > 0, got {value!r}")
    return value


def _positive_integer(name: str, value: Any) -> float:
    value = _positive_finite(name, value)
    if value != int(value):
        raise EventError(f"{name} must be a positive integer for an integer-valued mechanism, got {value!r}")
    return value


def _probability(name: str, q: Any) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not (0 < float(q) <= 1):
        raise EventError(f"{name} must be in (0, 1], got {q!r}")
    return float(q)


def _count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise EventError(f"{name} must be an integer >= 0, got {n!r}")
    return n


def _event(name: str, e: Any) -> DpEvent:
    _check_event(name, e)
    return e


def _events(name: str, es: Any) -> tuple:
    if not isinstance(es, (tuple, list)):
        raise EventError(f"{name} must be a tuple of events, got {type(es).__name__}")
    for i, e in enumerate(es):
        _check_event(f"{name}[{i}]", e)
    return tuple(es)


def _checked(check: Callable[[str, Any], Any], **kw: Any) -> Any:
    """A dataclass field whose value `DpEvent.__post_init__` passes through `check`."""
    return field(metadata={"check": check}, **kw)


# --- the family -----------------------------------------------------------------------------------

_REGISTRY: dict[str, type[DpEvent]] = {}


_E = TypeVar("_E", bound="type[DpEvent]")


def register(kind: str) -> Callable[[_E], _E]:
    """Class decorator: make a DpEvent subclass known under its wire name `kind`, which must be a
    field of the `DpEvent` oneof in protos/events.proto."""

    def deco(cls: _E) -> _E:
        if kind in _REGISTRY:
            raise ValueError(f"event kind {kind!r} registered twice")
        if kind not in events_pb2.DpEvent.DESCRIPTOR.fields_by_name:
            raise ValueError(f"event kind {kind!r} is not a field of protos/events.proto DpEvent")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


@dataclass(frozen=True)
class DpEvent:
    """Base of every DP event. Subclasses are frozen dataclasses registered with `@register`."""

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f"{type(self).__name__}.{f.name}", getattr(self, f.name)))

    def to_dict(self) -> dict:
        """This event's dict form (see `event_to_dict`)."""
        return event_to_dict(self)

    def to_proto(self) -> events_pb2.DpEvent:
        """This event's protobuf form (see `event_to_proto`)."""
        return event_to_proto(self)


@register("gaussian")
@dataclass(frozen=True)
class GaussianEvent(DpEvent):
    """Continuous Gaussian noise N(0, sigma^2) on a query of L2 sensitivity `sensitivity`."""

    sigma: float = _checked(_positive_finite)
    sensitivity: float = _checked(_positive_finite, default=1.0)

    @property
    def noise_multiplier(self) -> float:
        """sigma / sensitivity: the noise in units of one contributor's L2 influence."""
        return self.sigma / self.sensitivity


@register("discrete_gaussian")
@dataclass(frozen=True)
class DiscreteGaussianEvent(DpEvent):
    """Discrete Gaussian N_Z(0, sigma^2) on a scalar integer query (Canonne, Kamath & Steinke 2020,
    "The Discrete Gaussian for Differential Privacy", https://arxiv.org/abs/2004.00010). `sensitivity` is an
    integer: a vector release is written as a composition of scalar events (see privacy/mechanisms.py), which
    is what dp_accounting's exact discrete-Gaussian PLD takes. `sigma` is the distribution's parameter (its
    variance is slightly below sigma^2)."""

    sigma: float = _checked(_positive_finite)
    sensitivity: float = _checked(_positive_integer, default=1.0)


@register("laplace")
@dataclass(frozen=True)
class LaplaceEvent(DpEvent):
    """Continuous Laplace noise with scale b on a query of L1 sensitivity `sensitivity`."""

    scale: float = _checked(_positive_finite)
    sensitivity: float = _checked(_positive_finite, default=1.0)


@register("discrete_laplace")
@dataclass(frozen=True)
class DiscreteLaplaceEvent(DpEvent):
    """Discrete Laplace (two-sided geometric), pmf proportional to exp(-|x| / scale), integer query."""

    scale: float = _checked(_positive_finite)
    sensitivity: float = _checked(_positive_integer, default=1.0)


@register("poisson_sampled")
@dataclass(frozen=True)
class PoissonSampledEvent(DpEvent):
    """`event` run on a Poisson sample: each contributor included independently w.p. q."""

    sampling_probability: float = _checked(_probability)
    event: DpEvent = _checked(_event)


@register("self_composed")
@dataclass(frozen=True)
class SelfComposedEvent(DpEvent):
    """`event` run `count` times (e.g. the steps of DP-SGD)."""

    event: DpEvent = _checked(_event)
    count: int = _checked(_count)


@register("composed")
@dataclass(frozen=True)
class ComposedEvent(DpEvent):
    """Each of `events`, run one after another (adaptively)."""

    events: tuple[DpEvent, ...] = _checked(_events, default=())


def _epsilon(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise EventError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _delta(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= float(value) < 1):
        raise EventError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


@register("epsilon_delta")
@dataclass(frozen=True)
class EpsilonDeltaEvent(DpEvent):
    """A mechanism known only to be (epsilon, delta)-DP. Thresholded key selection (privacy/mechanisms.py
    `selection_event`) writes its keys-only-the-added-person-holds part as (0, delta), delta from OpenDP's
    proven privacy map. Accounted as the (epsilon, delta) randomized-response pair, which dominates every
    (epsilon, delta)-DP mechanism (Kairouz, Oh & Viswanath 2015, "The Composition Theorem for Differential
    Privacy", https://arxiv.org/abs/1311.0776, Section 3, the mechanism behind their Theorem 3.3), so composing
    its PLD (dp_accounting `from_privacy_parameters`) with the others is sound. No RDP or zCDP curve exists
    for delta > 0: only PLD accounts it."""

    epsilon: float = _checked(_epsilon)
    delta: float = _checked(_delta, default=0.0)


@register("distributed_discrete_gaussian")
@dataclass(frozen=True)
class DistributedDiscreteGaussianEvent(DpEvent):
    """One step of the distributed discrete Gaussian (Kairouz, Liu & Steinke 2021, arXiv 2102.06387): `shares`
    N_Z(0, sigma^2)^(dim+1) on an integer vector (a person's rounded gradient, count) of L2 sensitivity `l2_sensitivity`;
    the rest lets an auditor recompute it and the wrap bound (privacy/distributed_dp.py, accounting/ddg.py).
    Refused unless the fields meet privacy/ddg_rules.py (the bounds' preconditions, the recomputed sensitivity)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (why := ddg_violation(self)) is not None:
            raise EventError(f"{type(self).__name__}: {why}")

    sigma: float = _checked(_positive_finite)
    shares: int = _checked(_count)
    dim: int = _checked(_count)
    l2_sensitivity: float = _checked(_positive_finite)
    clip: float = _checked(_positive_finite)
    gamma: float = _checked(_positive_finite)
    beta: float = _checked(_delta)
    count_weight: float = _checked(_positive_finite)
    bits: int = _checked(_count)
    participants: int = _checked(_count)
    max_people: int = _checked(_count)


@register("no_op")
@dataclass(frozen=True)
class NoOpEvent(DpEvent):
    """Releases nothing private (e.g. public data, or nothing at all)."""


def _check_event(name: str, e: object) -> None:
    # Only registered classes are events: not the base, not an unregistered subclass.
    if _REGISTRY.get(getattr(type(e), "kind", "")) is not type(e):
        raise EventError(f"{name} must be a DP event, got {type(e).__name__}")


# --- the one generic conversion -------------------------------------------------------------------


_LAYOUTS: dict[type[DpEvent], tuple[tuple[str, str], ...]] = {}


def _fields_of(cls: type[DpEvent]) -> tuple[tuple[str, str], ...]:
    """(field name, wire shape) per dataclass field, from its type: "scalar" (float), "int",
    "event" (a nested DpEvent) or "events" (a tuple of DpEvents). Computed once per class."""
    if cls not in _LAYOUTS:
        hints = typing.get_type_hints(cls)
        out = []
        for f in fields(cls):
            hint = hints[f.name]
            out.append((f.name, "event" if hint is DpEvent else "events" if typing.get_origin(hint) is tuple
                        else "int" if hint is int else "scalar"))
        _LAYOUTS[cls] = tuple(out)
    return _LAYOUTS[cls]


def _has_default(cls: type[DpEvent], name: str) -> bool:
    f = cls.__dataclass_fields__[name]
    return f.default is not MISSING or f.default_factory is not MISSING


def event_to_dict(event: DpEvent) -> dict:
    """{kind: {field: value}}, nested events as dicts (JSON-able)."""
    _check_event("event", event)
    body: dict = {}
    for name, shape in _fields_of(type(event)):
        value = getattr(event, name)
        if shape == "event":
            body[name] = event_to_dict(value)
        elif shape == "events":
            body[name] = [event_to_dict(e) for e in value]
        else:
            body[name] = value
    return {event.kind: body}


def event_from_dict(d: dict) -> DpEvent:
    """The inverse of `event_to_dict`; raises EventError naming the kind or field at fault."""
    if not isinstance(d, dict) or len(d) != 1:
        raise EventError(f"an event dict has exactly one key naming its kind, got {d!r}")
    ((kind, body),) = d.items()
    if kind not in _REGISTRY:
        raise EventError(f"unknown event kind {kind!r} (known: {', '.join(_REGISTRY)})")
    cls, body = _REGISTRY[kind], body or {}
    kwargs: dict[str, Any] = {}
    for name, shape in _fields_of(cls):
        if name not in body:
            if _has_default(cls, name):
                continue
            raise EventError(f"{kind} event is missing field {name!r}")
        value = body[name]
        if shape == "event":
            value = event_from_dict(value)
        elif shape == "events":
            value = tuple(event_from_dict(e) for e in value)
        elif shape == "int":
            value = int(value)
        kwargs[name] = value
    return cls(**kwargs)


def event_to_proto(event: DpEvent) -> events_pb2.DpEvent:
    """The `cairn.v1.DpEvent` message (protos/events.proto) of `event`."""
    _check_event("event", event)
    msg = events_pb2.DpEvent()
    sub = getattr(msg, event.kind)
    sub.SetInParent()  # an event with no fields (no_op, empty composed) is still set
    for name, shape in _fields_of(type(event)):
        value = getattr(event, name)
        if shape == "event":
            getattr(sub, name).CopyFrom(event_to_proto(value))
        elif shape == "events":
            getattr(sub, name).extend(event_to_proto(e) for e in value)
        else:
            setattr(sub, name, value)
    return msg


def event_from_proto(msg: events_pb2.DpEvent) -> DpEvent:
    """The inverse of `event_to_proto`; raises EventError when the message holds no valid event."""
    kind = msg.WhichOneof("event")
    if kind is None:
        raise EventError("DpEvent message has no event set")
    cls, sub = _REGISTRY[kind], getattr(msg, kind)
    kwargs: dict[str, Any] = {}
    for name, shape in _fields_of(cls):
        value = getattr(sub, name)
        if shape == "event":
            value = event_from_proto(value)
        elif shape == "events":
            value = tuple(event_from_proto(e) for e in value)
        elif shape == "int":
            value = int(value)
        kwargs[name] = value
    return cls(**kwargs)


# --- the DP-SGD event: built here once, read back here once --------------------------------------


@dataclass(frozen=True)
class DpSgdParams:
    """What one DP-SGD release is: `steps` steps, each on a Poisson sample of contributors at rate
    `sampling_probability`, summing per-contributor gradients clipped to L2 norm `clip_norm` and adding
    N(0, (noise_multiplier * clip_norm)^2) (Abadi et al. 2016, Algorithm 1, https://arxiv.org/abs/1607.00133)."""

    sampling_probability: float
    noise_multiplier: float
    steps: int
    clip_norm: float = 1.0


def dpsgd_event(sampling_probability: float, noise_multiplier: float, steps: int, clip_norm: float = 1.0) -> DpEvent:
    """The ledger event of a DP-SGD release: SelfComposed(PoissonSampled(q, Gaussian(z*C, C)), steps)."""
    return SelfComposedEvent(
        PoissonSampledEvent(sampling_probability, GaussianEvent(sigma=noise_multiplier * clip_norm, sensitivity=clip_norm)),
        int(steps),
    )


def dpsgd_params(event: DpEvent) -> DpSgdParams | None:
    """The inverse of `dpsgd_event`: the parameters of a DP-SGD-shaped event, else None."""
    steps = 1
    while isinstance(event, SelfComposedEvent):
        steps *= event.count
        event = event.event
    if not isinstance(event, PoissonSampledEvent) or not isinstance(event.event, GaussianEvent):
        return None
    g = event.event
    return DpSgdParams(event.sampling_probability, g.noise_multiplier, steps, g.sensitivity)
