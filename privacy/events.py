"""DP events: immutable descriptions of the privacy mechanism behind each release.

Modelled on Google's dp_accounting DpEvent (Google DP team, 2021): an event says *what noise was
added to what* and nothing else; its meaning never changes once written, so a ledger of events is
exactly what an auditor needs to recompute epsilon.

Neighbouring relation everywhere: add/remove one contributor (a person), DESIGN invariant 4.
`sensitivity` is how much one contributor can move the query: L2 for Gaussians, L1 for Laplaces.

Forms: dataclass <-> protobuf (`protos/events.proto`) <-> plain dict (JSON-able, same shape as
the protobuf's field names: {"gaussian": {"sigma": 2.0, "sensitivity": 1.0}}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from protos import events_pb2


class EventError(ValueError):
    """An event's parameters are invalid (the message names the field)."""


def _positive_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise EventError(f"{name} must be finite and > 0, got {value!r}")
    return value


def _positive_integer(name: str, value: float) -> float:
    value = _positive_finite(name, value)
    if value != int(value):
        raise EventError(f"{name} must be a positive integer for an integer-valued mechanism, got {value!r}")
    return value


@dataclass(frozen=True)
class GaussianEvent:
    """Continuous Gaussian noise N(0, sigma^2) on a query of L2 sensitivity `sensitivity`."""

    sigma: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _positive_finite("GaussianEvent.sigma", self.sigma))
        object.__setattr__(self, "sensitivity", _positive_finite("GaussianEvent.sensitivity", self.sensitivity))

    @property
    def noise_multiplier(self) -> float:
        return self.sigma / self.sensitivity


@dataclass(frozen=True)
class DiscreteGaussianEvent:
    """Discrete Gaussian N_Z(0, sigma^2) (Canonne, Kamath & Steinke 2020) on a scalar integer query.

    `sensitivity` is an integer: a vector release is written as a composition of scalar events
    (see privacy/mechanisms.py), which is what dp_accounting's exact discrete-Gaussian PLD takes.
    `sigma` is the distribution's parameter (its variance is slightly below sigma^2).
    """

    sigma: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _positive_finite("DiscreteGaussianEvent.sigma", self.sigma))
        object.__setattr__(
            self, "sensitivity", _positive_integer("DiscreteGaussianEvent.sensitivity", self.sensitivity)
        )


@dataclass(frozen=True)
class LaplaceEvent:
    """Continuous Laplace noise with scale b on a query of L1 sensitivity `sensitivity`."""

    scale: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _positive_finite("LaplaceEvent.scale", self.scale))
        object.__setattr__(self, "sensitivity", _positive_finite("LaplaceEvent.sensitivity", self.sensitivity))


@dataclass(frozen=True)
class DiscreteLaplaceEvent:
    """Discrete Laplace (two-sided geometric), pmf proportional to exp(-|x| / scale), integer query."""

    scale: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _positive_finite("DiscreteLaplaceEvent.scale", self.scale))
        object.__setattr__(
            self, "sensitivity", _positive_integer("DiscreteLaplaceEvent.sensitivity", self.sensitivity)
        )


@dataclass(frozen=True)
class PoissonSampledEvent:
    """`event` run on a Poisson sample: each contributor included independently w.p. q."""

    sampling_probability: float
    event: "DpEvent"

    def __post_init__(self) -> None:
        q = self.sampling_probability
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not (0 < float(q) <= 1):
            raise EventError(f"PoissonSampledEvent.sampling_probability must be in (0, 1], got {q!r}")
        object.__setattr__(self, "sampling_probability", float(q))
        _check_event("PoissonSampledEvent.event", self.event)


@dataclass(frozen=True)
class SelfComposedEvent:
    """`event` run `count` times (e.g. the steps of DP-SGD)."""

    event: "DpEvent"
    count: int

    def __post_init__(self) -> None:
        _check_event("SelfComposedEvent.event", self.event)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise EventError(f"SelfComposedEvent.count must be an integer >= 0, got {self.count!r}")


@dataclass(frozen=True)
class ComposedEvent:
    """Each of `events`, run one after another (adaptively)."""

    events: tuple

    def __post_init__(self) -> None:
        if not isinstance(self.events, (tuple, list)):
            raise EventError(f"ComposedEvent.events must be a tuple of events, got {type(self.events).__name__}")
        object.__setattr__(self, "events", tuple(self.events))
        for i, e in enumerate(self.events):
            _check_event(f"ComposedEvent.events[{i}]", e)


@dataclass(frozen=True)
class NoOpEvent:
    """Releases nothing private (e.g. public data, or nothing at all)."""


DpEvent = Union[
    GaussianEvent,
    DiscreteGaussianEvent,
    LaplaceEvent,
    DiscreteLaplaceEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    ComposedEvent,
    NoOpEvent,
]
EVENT_TYPES = (
    GaussianEvent,
    DiscreteGaussianEvent,
    LaplaceEvent,
    DiscreteLaplaceEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    ComposedEvent,
    NoOpEvent,
)
_NAMES = {
    GaussianEvent: "gaussian",
    DiscreteGaussianEvent: "discrete_gaussian",
    LaplaceEvent: "laplace",
    DiscreteLaplaceEvent: "discrete_laplace",
    PoissonSampledEvent: "poisson_sampled",
    SelfComposedEvent: "self_composed",
    ComposedEvent: "composed",
    NoOpEvent: "no_op",
}
_BY_NAME = {v: k for k, v in _NAMES.items()}


def _check_event(name: str, e: object) -> None:
    if not isinstance(e, EVENT_TYPES):
        raise EventError(f"{name} must be a DP event, got {type(e).__name__}")


# --- dict form ----------------------------------------------------------------------------------


def event_to_dict(event: DpEvent) -> dict:
    _check_event("event", event)
    name = _NAMES[type(event)]
    if isinstance(event, (GaussianEvent, DiscreteGaussianEvent)):
        return {name: {"sigma": event.sigma, "sensitivity": event.sensitivity}}
    if isinstance(event, (LaplaceEvent, DiscreteLaplaceEvent)):
        return {name: {"scale": event.scale, "sensitivity": event.sensitivity}}
    if isinstance(event, PoissonSampledEvent):
        return {name: {"sampling_probability": event.sampling_probability, "event": event_to_dict(event.event)}}
    if isinstance(event, SelfComposedEvent):
        return {name: {"event": event_to_dict(event.event), "count": event.count}}
    if isinstance(event, ComposedEvent):
        return {name: {"events": [event_to_dict(e) for e in event.events]}}
    return {name: {}}


def event_from_dict(d: dict) -> DpEvent:
    if not isinstance(d, dict) or len(d) != 1:
        raise EventError(f"an event dict has exactly one key naming its kind, got {d!r}")
    ((name, body),) = d.items()
    if name not in _BY_NAME:
        raise EventError(f"unknown event kind {name!r} (known: {', '.join(_BY_NAME)})")
    body = body or {}
    cls = _BY_NAME[name]
    try:
        if cls in (GaussianEvent, DiscreteGaussianEvent):
            return cls(sigma=body["sigma"], sensitivity=body.get("sensitivity", 1.0))
        if cls in (LaplaceEvent, DiscreteLaplaceEvent):
            return cls(scale=body["scale"], sensitivity=body.get("sensitivity", 1.0))
        if cls is PoissonSampledEvent:
            return cls(body["sampling_probability"], event_from_dict(body["event"]))
        if cls is SelfComposedEvent:
            return cls(event_from_dict(body["event"]), int(body["count"]))
        if cls is ComposedEvent:
            return cls(tuple(event_from_dict(e) for e in body.get("events", [])))
    except KeyError as e:
        raise EventError(f"{name} event is missing field {e.args[0]!r}") from None
    return NoOpEvent()


# --- protobuf form ------------------------------------------------------------------------------


def event_to_proto(event: DpEvent) -> events_pb2.DpEvent:
    _check_event("event", event)
    msg = events_pb2.DpEvent()
    if isinstance(event, GaussianEvent):
        msg.gaussian.sigma, msg.gaussian.sensitivity = event.sigma, event.sensitivity
    elif isinstance(event, DiscreteGaussianEvent):
        msg.discrete_gaussian.sigma, msg.discrete_gaussian.sensitivity = event.sigma, event.sensitivity
    elif isinstance(event, LaplaceEvent):
        msg.laplace.scale, msg.laplace.sensitivity = event.scale, event.sensitivity
    elif isinstance(event, DiscreteLaplaceEvent):
        msg.discrete_laplace.scale, msg.discrete_laplace.sensitivity = event.scale, event.sensitivity
    elif isinstance(event, PoissonSampledEvent):
        msg.poisson_sampled.sampling_probability = event.sampling_probability
        msg.poisson_sampled.event.CopyFrom(event_to_proto(event.event))
    elif isinstance(event, SelfComposedEvent):
        msg.self_composed.event.CopyFrom(event_to_proto(event.event))
        msg.self_composed.count = event.count
    elif isinstance(event, ComposedEvent):
        msg.composed.SetInParent()
        for e in event.events:
            msg.composed.events.append(event_to_proto(e))
    else:
        msg.no_op.SetInParent()
    return msg


def event_from_proto(msg: events_pb2.DpEvent) -> DpEvent:
    which = msg.WhichOneof("event")
    if which is None:
        raise EventError("DpEvent message has no event set")
    if which == "gaussian":
        return GaussianEvent(msg.gaussian.sigma, msg.gaussian.sensitivity)
    if which == "discrete_gaussian":
        return DiscreteGaussianEvent(msg.discrete_gaussian.sigma, msg.discrete_gaussian.sensitivity)
    if which == "laplace":
        return LaplaceEvent(msg.laplace.scale, msg.laplace.sensitivity)
    if which == "discrete_laplace":
        return DiscreteLaplaceEvent(msg.discrete_laplace.scale, msg.discrete_laplace.sensitivity)
    if which == "poisson_sampled":
        return PoissonSampledEvent(msg.poisson_sampled.sampling_probability, event_from_proto(msg.poisson_sampled.event))
    if which == "self_composed":
        return SelfComposedEvent(event_from_proto(msg.self_composed.event), int(msg.self_composed.count))
    if which == "composed":
        return ComposedEvent(tuple(event_from_proto(e) for e in msg.composed.events))
    return NoOpEvent()


# Method forms, so that `event.to_proto()` / `event.to_dict()` read naturally.
for _cls in EVENT_TYPES:
    _cls.to_proto = event_to_proto  # type: ignore[attr-defined]
    _cls.to_dict = event_to_dict  # type: ignore[attr-defined]
del _cls
