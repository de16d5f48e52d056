from protos import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LedgerEntryBody(_message.Message):
    __slots__ = ("seq", "prev_hash", "node_id", "created_at", "release_kind", "round_id", "request_hash", "payload_hash", "event", "contributors", "claimed_epsilon", "target_delta", "accountant", "policy_hash", "schedule", "plan_id", "plan_event", "plan_epsilon", "plan_accountant")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_HASH_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    TARGET_DELTA_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_EVENT_FIELD_NUMBER: _ClassVar[int]
    PLAN_EPSILON_FIELD_NUMBER: _ClassVar[int]
    PLAN_ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    prev_hash: bytes
    node_id: str
    created_at: str
    release_kind: str
    round_id: str
    request_hash: str
    payload_hash: str
    event: _events_pb2.DpEvent
    contributors: int
    claimed_epsilon: float
    target_delta: float
    accountant: str
    policy_hash: str
    schedule: str
    plan_id: str
    plan_event: _events_pb2.DpEvent
    plan_epsilon: float
    plan_accountant: str
    def __init__(self, seq: _Optional[int] = ..., prev_hash: _Optional[bytes] = ..., node_id: _Optional[str] = ..., created_at: _Optional[str] = ..., release_kind: _Optional[str] = ..., round_id: _Optional[str] = ..., request_hash: _Optional[str] = ..., payload_hash: _Optional[str] = ..., event: _Optional[_Union[_events_pb2.DpEvent, _Mapping]] = ..., contributors: _Optional[int] = ..., claimed_epsilon: _Optional[float] = ..., target_delta: _Optional[float] = ..., accountant: _Optional[str] = ..., policy_hash: _Optional[str] = ..., schedule: _Optional[str] = ..., plan_id: _Optional[str] = ..., plan_event: _Optional[_Union[_events_pb2.DpEvent, _Mapping]] = ..., plan_epsilon: _Optional[float] = ..., plan_accountant: _Optional[str] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("body", "entry_hash", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: LedgerEntryBody
    entry_hash: bytes
    signature: bytes
    def __init__(self, body: _Optional[_Union[LedgerEntryBody, _Mapping]] = ..., entry_hash: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class LedgerExport(_message.Message):
    __slots__ = ("node_id", "node_name", "public_key", "entries")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    public_key: bytes
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., public_key: _Optional[bytes] = ..., entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ...) -> None: ...
