from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sample(_message.Message):
    __slots__ = ("ts", "cpu_count", "cpu_used_pct", "mem_total_mib", "mem_used_mib", "mem_total", "mem_used", "mem_cache", "disk_used", "disk_total")
    TS_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    CPU_USED_PCT_FIELD_NUMBER: _ClassVar[int]
    MEM_TOTAL_MIB_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_MIB_FIELD_NUMBER: _ClassVar[int]
    MEM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_FIELD_NUMBER: _ClassVar[int]
    MEM_CACHE_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ts: int
    cpu_count: int
    cpu_used_pct: float
    mem_total_mib: int
    mem_used_mib: int
    mem_total: int
    mem_used: int
    mem_cache: int
    disk_used: int
    disk_total: int
    def __init__(self, ts: _Optional[int] = ..., cpu_count: _Optional[int] = ..., cpu_used_pct: _Optional[float] = ..., mem_total_mib: _Optional[int] = ..., mem_used_mib: _Optional[int] = ..., mem_total: _Optional[int] = ..., mem_used: _Optional[int] = ..., mem_cache: _Optional[int] = ..., disk_used: _Optional[int] = ..., disk_total: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("sample", "samples_taken")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_TAKEN_FIELD_NUMBER: _ClassVar[int]
    sample: Sample
    samples_taken: int
    def __init__(self, sample: _Optional[_Union[Sample, _Mapping]] = ..., samples_taken: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("interval_ms",)
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    interval_ms: int
    def __init__(self, interval_ms: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("sample", "keepalive")
    class KeepAlive(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    sample: Sample
    keepalive: WatchResponse.KeepAlive
    def __init__(self, sample: _Optional[_Union[Sample, _Mapping]] = ..., keepalive: _Optional[_Union[WatchResponse.KeepAlive, _Mapping]] = ...) -> None: ...
