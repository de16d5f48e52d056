from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BundleFile(_message.Message):
    __slots__ = ("path", "sha256", "size", "kind")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size: int
    kind: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., kind: _Optional[str] = ...) -> None: ...

class BundleNode(_message.Message):
    __slots__ = ("node_id", "name", "ledger_public_key", "ledger_file", "claimed_epsilon", "delta", "accountant", "ledger_head_hash", "ledger_entries", "paradigm")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEDGER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FILE_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    LEDGER_HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    PARADIGM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    ledger_public_key: bytes
    ledger_file: str
    claimed_epsilon: float
    delta: float
    accountant: str
    ledger_head_hash: bytes
    ledger_entries: int
    paradigm: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., ledger_public_key: _Optional[bytes] = ..., ledger_file: _Optional[str] = ..., claimed_epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., accountant: _Optional[str] = ..., ledger_head_hash: _Optional[bytes] = ..., ledger_entries: _Optional[int] = ..., paradigm: _Optional[str] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("path", "sources")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    path: str
    sources: _containers.RepeatedCompositeFieldContainer[ArtifactSource]
    def __init__(self, path: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[ArtifactSource, _Mapping]]] = ...) -> None: ...

class ArtifactSource(_message.Message):
    __slots__ = ("node_id", "ledger_seq", "ledger_entry_hash")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ledger_seq: int
    ledger_entry_hash: bytes
    def __init__(self, node_id: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., ledger_entry_hash: _Optional[bytes] = ...) -> None: ...

class BundleManifest(_message.Message):
    __slots__ = ("format", "created_at", "federation_id", "files", "nodes", "artifacts", "coordinator_public_key")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    format: str
    created_at: str
    federation_id: str
    files: _containers.RepeatedCompositeFieldContainer[BundleFile]
    nodes: _containers.RepeatedCompositeFieldContainer[BundleNode]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    coordinator_public_key: bytes
    def __init__(self, format: _Optional[str] = ..., created_at: _Optional[str] = ..., federation_id: _Optional[str] = ..., files: _Optional[_Iterable[_Union[BundleFile, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[BundleNode, _Mapping]]] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., coordinator_public_key: _Optional[bytes] = ...) -> None: ...

class RoundsRecord(_message.Message):
    __slots__ = ("rounds",)
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    rounds: _containers.RepeatedCompositeFieldContainer[Round]
    def __init__(self, rounds: _Optional[_Iterable[_Union[Round, _Mapping]]] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("round", "aggregation", "applied", "contributors", "refused", "dropped")
    class RefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    round: int
    aggregation: str
    applied: bool
    contributors: _containers.RepeatedCompositeFieldContainer[RoundContributor]
    refused: _containers.ScalarMap[str, str]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, round: _Optional[int] = ..., aggregation: _Optional[str] = ..., applied: _Optional[bool] = ..., contributors: _Optional[_Iterable[_Union[RoundContributor, _Mapping]]] = ..., refused: _Optional[_Mapping[str, str]] = ..., dropped: _Optional[_Iterable[str]] = ...) -> None: ...

class RoundContributor(_message.Message):
    __slots__ = ("node_id", "ledger_seq", "ledger_entry_hash", "claimed_epsilon", "sampling_probability", "noise_multiplier", "steps")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ledger_seq: int
    ledger_entry_hash: str
    claimed_epsilon: float
    sampling_probability: float
    noise_multiplier: float
    steps: int
    def __init__(self, node_id: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., ledger_entry_hash: _Optional[str] = ..., claimed_epsilon: _Optional[float] = ..., sampling_probability: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., steps: _Optional[int] = ...) -> None: ...
