from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GaussianEvent(_message.Message):
    __slots__ = ("sigma", "sensitivity")
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    sigma: float
    sensitivity: float
    def __init__(self, sigma: _Optional[float] = ..., sensitivity: _Optional[float] = ...) -> None: ...

class DiscreteGaussianEvent(_message.Message):
    __slots__ = ("sigma", "sensitivity")
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    sigma: float
    sensitivity: float
    def __init__(self, sigma: _Optional[float] = ..., sensitivity: _Optional[float] = ...) -> None: ...

class LaplaceEvent(_message.Message):
    __slots__ = ("scale", "sensitivity")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    scale: float
    sensitivity: float
    def __init__(self, scale: _Optional[float] = ..., sensitivity: _Optional[float] = ...) -> None: ...

class DiscreteLaplaceEvent(_message.Message):
    __slots__ = ("scale", "sensitivity")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    scale: float
    sensitivity: float
    def __init__(self, scale: _Optional[float] = ..., sensitivity: _Optional[float] = ...) -> None: ...

class PoissonSampledEvent(_message.Message):
    __slots__ = ("sampling_probability", "event")
    SAMPLING_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    sampling_probability: float
    event: DpEvent
    def __init__(self, sampling_probability: _Optional[float] = ..., event: _Optional[_Union[DpEvent, _Mapping]] = ...) -> None: ...

class SelfComposedEvent(_message.Message):
    __slots__ = ("event", "count")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    event: DpEvent
    count: int
    def __init__(self, event: _Optional[_Union[DpEvent, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class ComposedEvent(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[DpEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[DpEvent, _Mapping]]] = ...) -> None: ...

class NoOpEvent(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EpsilonDeltaEvent(_message.Message):
    __slots__ = ("epsilon", "delta")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    delta: float
    def __init__(self, epsilon: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class DistributedDiscreteGaussianEvent(_message.Message):
    __slots__ = ("sigma", "shares", "dim", "l2_sensitivity", "clip", "gamma", "beta", "count_weight", "bits", "participants", "max_people")
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    L2_SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    COUNT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    MAX_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    sigma: float
    shares: int
    dim: int
    l2_sensitivity: float
    clip: float
    gamma: float
    beta: float
    count_weight: float
    bits: int
    participants: int
    max_people: int
    def __init__(self, sigma: _Optional[float] = ..., shares: _Optional[int] = ..., dim: _Optional[int] = ..., l2_sensitivity: _Optional[float] = ..., clip: _Optional[float] = ..., gamma: _Optional[float] = ..., beta: _Optional[float] = ..., count_weight: _Optional[float] = ..., bits: _Optional[int] = ..., participants: _Optional[int] = ..., max_people: _Optional[int] = ...) -> None: ...

class DpEvent(_message.Message):
    __slots__ = ("gaussian", "discrete_gaussian", "laplace", "discrete_laplace", "poisson_sampled", "self_composed", "composed", "no_op", "epsilon_delta", "distributed_discrete_gaussian")
    GAUSSIAN_FIELD_NUMBER: _ClassVar[int]
    DISCRETE_GAUSSIAN_FIELD_NUMBER: _ClassVar[int]
    LAPLACE_FIELD_NUMBER: _ClassVar[int]
    DISCRETE_LAPLACE_FIELD_NUMBER: _ClassVar[int]
    POISSON_SAMPLED_FIELD_NUMBER: _ClassVar[int]
    SELF_COMPOSED_FIELD_NUMBER: _ClassVar[int]
    COMPOSED_FIELD_NUMBER: _ClassVar[int]
    NO_OP_FIELD_NUMBER: _ClassVar[int]
    EPSILON_DELTA_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_DISCRETE_GAUSSIAN_FIELD_NUMBER: _ClassVar[int]
    gaussian: GaussianEvent
    discrete_gaussian: DiscreteGaussianEvent
    laplace: LaplaceEvent
    discrete_laplace: DiscreteLaplaceEvent
    poisson_sampled: PoissonSampledEvent
    self_composed: SelfComposedEvent
    composed: ComposedEvent
    no_op: NoOpEvent
    epsilon_delta: EpsilonDeltaEvent
    distributed_discrete_gaussian: DistributedDiscreteGaussianEvent
    def __init__(self, gaussian: _Optional[_Union[GaussianEvent, _Mapping]] = ..., discrete_gaussian: _Optional[_Union[DiscreteGaussianEvent, _Mapping]] = ..., laplace: _Optional[_Union[LaplaceEvent, _Mapping]] = ..., discrete_laplace: _Optional[_Union[DiscreteLaplaceEvent, _Mapping]] = ..., poisson_sampled: _Optional[_Union[PoissonSampledEvent, _Mapping]] = ..., self_composed: _Optional[_Union[SelfComposedEvent, _Mapping]] = ..., composed: _Optional[_Union[ComposedEvent, _Mapping]] = ..., no_op: _Optional[_Union[NoOpEvent, _Mapping]] = ..., epsilon_delta: _Optional[_Union[EpsilonDeltaEvent, _Mapping]] = ..., distributed_discrete_gaussian: _Optional[_Union[DistributedDiscreteGaussianEvent, _Mapping]] = ...) -> None: ...
