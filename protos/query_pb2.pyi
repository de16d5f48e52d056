from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Query(_message.Message):
    __slots__ = ("name", "params", "epsilon", "round_id", "secagg")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.ScalarMap[str, str]
    epsilon: float
    round_id: str
    secagg: bool
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., epsilon: _Optional[float] = ..., round_id: _Optional[str] = ..., secagg: _Optional[bool] = ...) -> None: ...

class Cell(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: _containers.RepeatedScalarFieldContainer[str]
    value: int
    def __init__(self, key: _Optional[_Iterable[str]] = ..., value: _Optional[int] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("node_id", "query_name", "cells", "mechanism", "noise_scale", "ledger_seq", "cached", "ledger_entry_hash", "epsilon", "delta", "sensitivity", "max_partitions", "secagg", "round_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_NAME_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    NOISE_SCALE_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    MAX_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    query_name: str
    cells: _containers.RepeatedCompositeFieldContainer[Cell]
    mechanism: str
    noise_scale: float
    ledger_seq: int
    cached: bool
    ledger_entry_hash: bytes
    epsilon: float
    delta: float
    sensitivity: int
    max_partitions: int
    secagg: bool
    round_id: str
    def __init__(self, node_id: _Optional[str] = ..., query_name: _Optional[str] = ..., cells: _Optional[_Iterable[_Union[Cell, _Mapping]]] = ..., mechanism: _Optional[str] = ..., noise_scale: _Optional[float] = ..., ledger_seq: _Optional[int] = ..., cached: _Optional[bool] = ..., ledger_entry_hash: _Optional[bytes] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., sensitivity: _Optional[int] = ..., max_partitions: _Optional[int] = ..., secagg: _Optional[bool] = ..., round_id: _Optional[str] = ...) -> None: ...
