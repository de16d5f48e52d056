from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReleaseEnvelope(_message.Message):
    __slots__ = ("node_id", "ledger_seq", "ledger_entry_hash", "release_kind", "payload", "payload_sha256", "signature")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    RELEASE_KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ledger_seq: int
    ledger_entry_hash: bytes
    release_kind: str
    payload: bytes
    payload_sha256: bytes
    signature: bytes
    def __init__(self, node_id: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., ledger_entry_hash: _Optional[bytes] = ..., release_kind: _Optional[str] = ..., payload: _Optional[bytes] = ..., payload_sha256: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
