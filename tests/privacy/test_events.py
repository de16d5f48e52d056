import json
import math

import pytest

from privacy.events import (
    _REGISTRY,
    ComposedEvent,
    DiscreteGaussianEvent,
    DiscreteLaplaceEvent,
    EventError,
    GaussianEvent,
    LaplaceEvent,
    NoOpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    dpsgd_event,
    dpsgd_params,
    event_from_dict,
    event_from_proto,
)
from protos import events_pb2

NESTED = ComposedEvent(
    (
        SelfComposedEvent(PoissonSampledEvent(0.01, GaussianEvent(1.1, 1.0)), 1000),
        DiscreteGaussianEvent(7.5, 2),
        DiscreteLaplaceEvent(3.0, 1),
        LaplaceEvent(2.5, 0.5),
        NoOpEvent(),
        ComposedEvent(()),
    )
)


def test_proto_round_trip_is_exact():
    msg = NESTED.to_proto()
    wire = msg.SerializeToString(deterministic=True)
    back = event_from_proto(events_pb2.DpEvent.FromString(wire))
    assert back == NESTED
    assert back.to_proto().SerializeToString(deterministic=True) == wire


def test_dict_round_trip_through_json():
    d = json.loads(json.dumps(NESTED.to_dict()))
    assert event_from_dict(d) == NESTED
    assert d["composed"]["events"][1] == {"discrete_gaussian": {"sigma": 7.5, "sensitivity": 2.0}}


def test_events_are_frozen_and_hashable():
    e = GaussianEvent(2.0)
    with pytest.raises(Exception):
        e.sigma = 0.1  # type: ignore[misc]
    assert hash(e) == hash(GaussianEvent(2.0, 1.0))


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: GaussianEvent(0.0), "GaussianEvent.sigma"),
        (lambda: GaussianEvent(-1.0), "GaussianEvent.sigma"),
        (lambda: GaussianEvent(math.inf), "GaussianEvent.sigma"),
        (lambda: GaussianEvent(1.0, 0.0), "GaussianEvent.sensitivity"),
        (lambda: DiscreteGaussianEvent(1.0, 1.5), "DiscreteGaussianEvent.sensitivity"),
        (lambda: LaplaceEvent(float("nan")), "LaplaceEvent.scale"),
        (lambda: DiscreteLaplaceEvent(1.0, 0.5), "DiscreteLaplaceEvent.sensitivity"),
        (lambda: PoissonSampledEvent(0.0, GaussianEvent(1.0)), "sampling_probability"),
        (lambda: PoissonSampledEvent(1.5, GaussianEvent(1.0)), "sampling_probability"),
        (lambda: SelfComposedEvent(GaussianEvent(1.0), -1), "SelfComposedEvent.count"),
        (lambda: ComposedEvent((GaussianEvent(1.0), "gaussian")), "ComposedEvent.events[1]"),
    ],
)
def test_invalid_parameters_name_the_field(make, field):
    with pytest.raises(EventError, match=field.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_bad_dicts_and_protos_are_refused():
    with pytest.raises(EventError, match="unknown event kind"):
        event_from_dict({"gauss": {"sigma": 1.0}})
    with pytest.raises(EventError, match="missing field 'sigma'"):
        event_from_dict({"gaussian": {}})
    with pytest.raises(EventError, match="no event set"):
        event_from_proto(events_pb2.DpEvent())


def test_dpsgd_event_round_trips_through_its_reader():
    ev = dpsgd_event(0.02, 1.3, 150, clip_norm=0.5)
    assert ev == SelfComposedEvent(PoissonSampledEvent(0.02, GaussianEvent(0.65, 0.5)), 150)
    p = dpsgd_params(event_from_proto(ev.to_proto()))
    assert (p.sampling_probability, p.steps, p.clip_norm) == (0.02, 150, 0.5)
    assert p.noise_multiplier == pytest.approx(1.3)
    assert dpsgd_params(DiscreteGaussianEvent(2.0)) is None


def test_every_kind_is_registered_under_its_protobuf_field():
    assert set(_REGISTRY) == {f.name for f in events_pb2.DpEvent.DESCRIPTOR.oneofs_by_name["event"].fields}
