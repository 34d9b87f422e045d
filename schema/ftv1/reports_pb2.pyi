import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Trace(_message.Message):
    __slots__ = ("start_time", "end_time", "duration_ns", "root", "is_incomplete")
    class CachePolicy(_message.Message):
        __slots__ = ("scope", "max_age_ns")
        class Scope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[Trace.CachePolicy.Scope]
            PUBLIC: _ClassVar[Trace.CachePolicy.Scope]
            PRIVATE: _ClassVar[Trace.CachePolicy.Scope]
        UNKNOWN: Trace.CachePolicy.Scope
        PUBLIC: Trace.CachePolicy.Scope
        PRIVATE: Trace.CachePolicy.Scope
        SCOPE_FIELD_NUMBER: _ClassVar[int]
        MAX_AGE_NS_FIELD_NUMBER: _ClassVar[int]
        scope: Trace.CachePolicy.Scope
        max_age_ns: int
        def __init__(self, scope: _Optional[_Union[Trace.CachePolicy.Scope, str]] = ..., max_age_ns: _Optional[int] = ...) -> None: ...
    class Error(_message.Message):
        __slots__ = ("message", "location", "time_ns", "json")
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        LOCATION_FIELD_NUMBER: _ClassVar[int]
        TIME_NS_FIELD_NUMBER: _ClassVar[int]
        JSON_FIELD_NUMBER: _ClassVar[int]
        message: str
        location: _containers.RepeatedCompositeFieldContainer[Trace.Location]
        time_ns: int
        json: str
        def __init__(self, message: _Optional[str] = ..., location: _Optional[_Iterable[_Union[Trace.Location, _Mapping]]] = ..., time_ns: _Optional[int] = ..., json: _Optional[str] = ...) -> None: ...
    class Location(_message.Message):
        __slots__ = ("line", "column")
        LINE_FIELD_NUMBER: _ClassVar[int]
        COLUMN_FIELD_NUMBER: _ClassVar[int]
        line: int
        column: int
        def __init__(self, line: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...
    class Node(_message.Message):
        __slots__ = ("response_name", "index", "original_field_name", "type", "parent_type", "cache_policy", "start_time", "end_time", "error", "child")
        RESPONSE_NAME_FIELD_NUMBER: _ClassVar[int]
        INDEX_FIELD_NUMBER: _ClassVar[int]
        ORIGINAL_FIELD_NAME_FIELD_NUMBER: _ClassVar[int]
        TYPE_FIELD_NUMBER: _ClassVar[int]
        PARENT_TYPE_FIELD_NUMBER: _ClassVar[int]
        CACHE_POLICY_FIELD_NUMBER: _ClassVar[int]
        START_TIME_FIELD_NUMBER: _ClassVar[int]
        END_TIME_FIELD_NUMBER: _ClassVar[int]
        ERROR_FIELD_NUMBER: _ClassVar[int]
        CHILD_FIELD_NUMBER: _ClassVar[int]
        response_name: str
        index: int
        original_field_name: str
        type: str
        parent_type: str
        cache_policy: Trace.CachePolicy
        start_time: int
        end_time: int
        error: _containers.RepeatedCompositeFieldContainer[Trace.Error]
        child: _containers.RepeatedCompositeFieldContainer[Trace.Node]
        def __init__(self, response_name: _Optional[str] = ..., index: _Optional[int] = ..., original_field_name: _Optional[str] = ..., type: _Optional[str] = ..., parent_type: _Optional[str] = ..., cache_policy: _Optional[_Union[Trace.CachePolicy, _Mapping]] = ..., start_time: _Optional[int] = ..., end_time: _Optional[int] = ..., error: _Optional[_Iterable[_Union[Trace.Error, _Mapping]]] = ..., child: _Optional[_Iterable[_Union[Trace.Node, _Mapping]]] = ...) -> None: ...
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    IS_INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration_ns: int
    root: Trace.Node
    is_incomplete: bool
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ns: _Optional[int] = ..., root: _Optional[_Union[Trace.Node, _Mapping]] = ..., is_incomplete: _Optional[bool] = ...) -> None: ...
