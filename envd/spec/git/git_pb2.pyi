import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FileChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_CHANGE_UNMODIFIED: _ClassVar[FileChange]
    FILE_CHANGE_ADDED: _ClassVar[FileChange]
    FILE_CHANGE_MODIFIED: _ClassVar[FileChange]
    FILE_CHANGE_DELETED: _ClassVar[FileChange]
    FILE_CHANGE_UNTRACKED: _ClassVar[FileChange]
    FILE_CHANGE_CONFLICTED: _ClassVar[FileChange]

class ResetMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESET_MODE_MIXED: _ClassVar[ResetMode]
    RESET_MODE_SOFT: _ClassVar[ResetMode]
    RESET_MODE_HARD: _ClassVar[ResetMode]

class ConfigScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFIG_SCOPE_GLOBAL: _ClassVar[ConfigScope]
    CONFIG_SCOPE_LOCAL: _ClassVar[ConfigScope]
    CONFIG_SCOPE_SYSTEM: _ClassVar[ConfigScope]
FILE_CHANGE_UNMODIFIED: FileChange
FILE_CHANGE_ADDED: FileChange
FILE_CHANGE_MODIFIED: FileChange
FILE_CHANGE_DELETED: FileChange
FILE_CHANGE_UNTRACKED: FileChange
FILE_CHANGE_CONFLICTED: FileChange
RESET_MODE_MIXED: ResetMode
RESET_MODE_SOFT: ResetMode
RESET_MODE_HARD: ResetMode
CONFIG_SCOPE_GLOBAL: ConfigScope
CONFIG_SCOPE_LOCAL: ConfigScope
CONFIG_SCOPE_SYSTEM: ConfigScope

class Credentials(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("message", "stage", "current", "total")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    message: str
    stage: str
    current: int
    total: int
    def __init__(self, message: _Optional[str] = ..., stage: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class KeepAlive(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloneRequest(_message.Message):
    __slots__ = ("url", "path", "branch", "depth", "credentials", "bare")
    URL_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    BARE_FIELD_NUMBER: _ClassVar[int]
    url: str
    path: str
    branch: str
    depth: int
    credentials: Credentials
    bare: bool
    def __init__(self, url: _Optional[str] = ..., path: _Optional[str] = ..., branch: _Optional[str] = ..., depth: _Optional[int] = ..., credentials: _Optional[_Union[Credentials, _Mapping]] = ..., bare: _Optional[bool] = ...) -> None: ...

class CloneResponse(_message.Message):
    __slots__ = ("progress", "done", "keepalive")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    done: CloneResult
    keepalive: KeepAlive
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., done: _Optional[_Union[CloneResult, _Mapping]] = ..., keepalive: _Optional[_Union[KeepAlive, _Mapping]] = ...) -> None: ...

class CloneResult(_message.Message):
    __slots__ = ("path", "head", "branch")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    path: str
    head: str
    branch: str
    def __init__(self, path: _Optional[str] = ..., head: _Optional[str] = ..., branch: _Optional[str] = ...) -> None: ...

class InitRequest(_message.Message):
    __slots__ = ("path", "bare", "initial_branch")
    PATH_FIELD_NUMBER: _ClassVar[int]
    BARE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BRANCH_FIELD_NUMBER: _ClassVar[int]
    path: str
    bare: bool
    initial_branch: str
    def __init__(self, path: _Optional[str] = ..., bare: _Optional[bool] = ..., initial_branch: _Optional[str] = ...) -> None: ...

class InitResponse(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class FileStatus(_message.Message):
    __slots__ = ("path", "index", "worktree")
    PATH_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    WORKTREE_FIELD_NUMBER: _ClassVar[int]
    path: str
    index: FileChange
    worktree: FileChange
    def __init__(self, path: _Optional[str] = ..., index: _Optional[_Union[FileChange, str]] = ..., worktree: _Optional[_Union[FileChange, str]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("branch", "detached", "head", "upstream", "ahead", "behind", "files")
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    AHEAD_FIELD_NUMBER: _ClassVar[int]
    BEHIND_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    branch: str
    detached: bool
    head: str
    upstream: str
    ahead: int
    behind: int
    files: _containers.RepeatedCompositeFieldContainer[FileStatus]
    def __init__(self, branch: _Optional[str] = ..., detached: _Optional[bool] = ..., head: _Optional[str] = ..., upstream: _Optional[str] = ..., ahead: _Optional[int] = ..., behind: _Optional[int] = ..., files: _Optional[_Iterable[_Union[FileStatus, _Mapping]]] = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("path", "paths")
    PATH_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    path: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ...) -> None: ...

class AddResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("path", "message", "author_name", "author_email", "allow_empty")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_NAME_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_EMAIL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_EMPTY_FIELD_NUMBER: _ClassVar[int]
    path: str
    message: str
    author_name: str
    author_email: str
    allow_empty: bool
    def __init__(self, path: _Optional[str] = ..., message: _Optional[str] = ..., author_name: _Optional[str] = ..., author_email: _Optional[str] = ..., allow_empty: _Optional[bool] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("sha",)
    SHA_FIELD_NUMBER: _ClassVar[int]
    sha: str
    def __init__(self, sha: _Optional[str] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("path", "ref", "max_count")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    path: str
    ref: str
    max_count: int
    def __init__(self, path: _Optional[str] = ..., ref: _Optional[str] = ..., max_count: _Optional[int] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("name", "email", "time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    email: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., email: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CommitInfo(_message.Message):
    __slots__ = ("sha", "message", "author", "committer", "parents")
    SHA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    COMMITTER_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    sha: str
    message: str
    author: Signature
    committer: Signature
    parents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha: _Optional[str] = ..., message: _Optional[str] = ..., author: _Optional[_Union[Signature, _Mapping]] = ..., committer: _Optional[_Union[Signature, _Mapping]] = ..., parents: _Optional[_Iterable[str]] = ...) -> None: ...

class LogResponse(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[CommitInfo]
    def __init__(self, commits: _Optional[_Iterable[_Union[CommitInfo, _Mapping]]] = ...) -> None: ...

class ListBranchesRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class Branch(_message.Message):
    __slots__ = ("name", "commit", "current", "upstream")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    commit: str
    current: bool
    upstream: str
    def __init__(self, name: _Optional[str] = ..., commit: _Optional[str] = ..., current: _Optional[bool] = ..., upstream: _Optional[str] = ...) -> None: ...

class ListBranchesResponse(_message.Message):
    __slots__ = ("branches", "current")
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    branches: _containers.RepeatedCompositeFieldContainer[Branch]
    current: str
    def __init__(self, branches: _Optional[_Iterable[_Union[Branch, _Mapping]]] = ..., current: _Optional[str] = ...) -> None: ...

class CreateBranchRequest(_message.Message):
    __slots__ = ("path", "name", "start_point", "checkout")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_POINT_FIELD_NUMBER: _ClassVar[int]
    CHECKOUT_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    start_point: str
    checkout: bool
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ..., start_point: _Optional[str] = ..., checkout: _Optional[bool] = ...) -> None: ...

class CreateBranchResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckoutBranchRequest(_message.Message):
    __slots__ = ("path", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CheckoutBranchResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteBranchRequest(_message.Message):
    __slots__ = ("path", "name", "force")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    force: bool
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteBranchResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRemotesRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class Remote(_message.Message):
    __slots__ = ("name", "url")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class ListRemotesResponse(_message.Message):
    __slots__ = ("remotes",)
    REMOTES_FIELD_NUMBER: _ClassVar[int]
    remotes: _containers.RepeatedCompositeFieldContainer[Remote]
    def __init__(self, remotes: _Optional[_Iterable[_Union[Remote, _Mapping]]] = ...) -> None: ...

class AddRemoteRequest(_message.Message):
    __slots__ = ("path", "name", "url", "overwrite")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    url: str
    overwrite: bool
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ..., url: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class AddRemoteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveRemoteRequest(_message.Message):
    __slots__ = ("path", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RemoveRemoteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("path", "remote", "credentials", "depth")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    path: str
    remote: str
    credentials: Credentials
    depth: int
    def __init__(self, path: _Optional[str] = ..., remote: _Optional[str] = ..., credentials: _Optional[_Union[Credentials, _Mapping]] = ..., depth: _Optional[int] = ...) -> None: ...

class RefUpdate(_message.Message):
    __slots__ = ("ref", "old_sha", "new_sha")
    REF_FIELD_NUMBER: _ClassVar[int]
    OLD_SHA_FIELD_NUMBER: _ClassVar[int]
    NEW_SHA_FIELD_NUMBER: _ClassVar[int]
    ref: str
    old_sha: str
    new_sha: str
    def __init__(self, ref: _Optional[str] = ..., old_sha: _Optional[str] = ..., new_sha: _Optional[str] = ...) -> None: ...

class FetchResult(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: _containers.RepeatedCompositeFieldContainer[RefUpdate]
    def __init__(self, updated: _Optional[_Iterable[_Union[RefUpdate, _Mapping]]] = ...) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("progress", "done", "keepalive")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    done: FetchResult
    keepalive: KeepAlive
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., done: _Optional[_Union[FetchResult, _Mapping]] = ..., keepalive: _Optional[_Union[KeepAlive, _Mapping]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("path", "remote", "branch", "credentials", "ff_only")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    FF_ONLY_FIELD_NUMBER: _ClassVar[int]
    path: str
    remote: str
    branch: str
    credentials: Credentials
    ff_only: bool
    def __init__(self, path: _Optional[str] = ..., remote: _Optional[str] = ..., branch: _Optional[str] = ..., credentials: _Optional[_Union[Credentials, _Mapping]] = ..., ff_only: _Optional[bool] = ...) -> None: ...

class PullResult(_message.Message):
    __slots__ = ("head", "fast_forward", "up_to_date")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    FAST_FORWARD_FIELD_NUMBER: _ClassVar[int]
    UP_TO_DATE_FIELD_NUMBER: _ClassVar[int]
    head: str
    fast_forward: bool
    up_to_date: bool
    def __init__(self, head: _Optional[str] = ..., fast_forward: _Optional[bool] = ..., up_to_date: _Optional[bool] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("progress", "done", "keepalive")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    done: PullResult
    keepalive: KeepAlive
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., done: _Optional[_Union[PullResult, _Mapping]] = ..., keepalive: _Optional[_Union[KeepAlive, _Mapping]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("path", "remote", "branch", "credentials", "force", "set_upstream")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    SET_UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    path: str
    remote: str
    branch: str
    credentials: Credentials
    force: bool
    set_upstream: bool
    def __init__(self, path: _Optional[str] = ..., remote: _Optional[str] = ..., branch: _Optional[str] = ..., credentials: _Optional[_Union[Credentials, _Mapping]] = ..., force: _Optional[bool] = ..., set_upstream: _Optional[bool] = ...) -> None: ...

class PushResult(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: _containers.RepeatedCompositeFieldContainer[RefUpdate]
    def __init__(self, updated: _Optional[_Iterable[_Union[RefUpdate, _Mapping]]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("progress", "done", "keepalive")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    done: PushResult
    keepalive: KeepAlive
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., done: _Optional[_Union[PushResult, _Mapping]] = ..., keepalive: _Optional[_Union[KeepAlive, _Mapping]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("path", "mode", "target", "paths")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    path: str
    mode: ResetMode
    target: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., mode: _Optional[_Union[ResetMode, str]] = ..., target: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("head",)
    HEAD_FIELD_NUMBER: _ClassVar[int]
    head: str
    def __init__(self, head: _Optional[str] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("path", "paths", "staged", "worktree", "source")
    PATH_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    STAGED_FIELD_NUMBER: _ClassVar[int]
    WORKTREE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    path: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    staged: bool
    worktree: bool
    source: str
    def __init__(self, path: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., staged: _Optional[bool] = ..., worktree: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class RestoreResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("scope", "path", "key")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    scope: ConfigScope
    path: str
    key: str
    def __init__(self, scope: _Optional[_Union[ConfigScope, str]] = ..., path: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: str
    def __init__(self, value: _Optional[str] = ...) -> None: ...

class SetConfigRequest(_message.Message):
    __slots__ = ("scope", "path", "key", "value")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    scope: ConfigScope
    path: str
    key: str
    value: str
    def __init__(self, scope: _Optional[_Union[ConfigScope, str]] = ..., path: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class SetConfigResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
