"""Opening, creating and cloning repositories with the request user's configuration.

dulwich reads the "global" git config from the process's $HOME (root's), in several places (Repo.get_config_stack,
clone's defaults). The git threads instead name the request user's home in a thread-local, and dulwich's
default config lookup is pointed at it: identities and settings are the user's, and concurrent requests of
different users never share os.environ.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ...errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from .credentials import Credentials, split_url, transport_kwargs

SYSTEM_CONFIG = "/etc/gitconfig"
_config_home = threading.local()


def user_config_paths(home: str) -> list[str]:
    """git-config(1) FILES, most specific first: ~/.gitconfig, ~/.config/git/config, /etc/gitconfig."""
    return [os.path.join(home, ".gitconfig"), os.path.join(home, ".config", "git", "config"), SYSTEM_CONFIG]


def _user_backends(home: str) -> list:
    from dulwich.config import ConfigFile

    backends = []
    for path in user_config_paths(home):
        try:
            backends.append(ConfigFile.from_path(path))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return backends


def user_config_stack(home: str):
    from dulwich.config import StackedConfig

    return StackedConfig(_user_backends(home))


def _install_config_hook() -> None:
    from dulwich.config import StackedConfig

    if getattr(StackedConfig, "_envd_hooked", False):
        return
    original = StackedConfig.default_backends.__func__

    def default_backends(cls) -> list:
        home = getattr(_config_home, "home", None)
        return original(cls) if home is None else _user_backends(home)

    StackedConfig.default_backends = classmethod(default_backends)
    StackedConfig._envd_hooked = True


@contextmanager
def config_of(home: str) -> Iterator[None]:
    """Within this block (in this thread) dulwich's default git config is the one of the user whose home it is."""
    _install_config_hook()
    _config_home.home = home
    try:
        yield
    finally:
        _config_home.home = None


def open_repository(path: str):
    """The repository whose working tree (or bare directory) is `path`; not a subdirectory of one, like `-C`
    would allow, since the API names repositories by their root."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    if not os.path.exists(path):
        raise NotFound(f"path '{path}' does not exist")
    if not os.path.isdir(path):
        raise FailedPrecondition(f"path '{path}' is not a directory")
    try:
        return Repo(path)
    except NotGitRepository:
        raise FailedPrecondition(f"not a git repository: '{path}'") from None


def init(path: str, home: str, bare: bool, initial_branch: str | None) -> str:
    from dulwich.repo import Repo

    if os.path.exists(os.path.join(path, ".git")) or os.path.exists(os.path.join(path, "HEAD")):
        raise AlreadyExists(f"'{path}' is already a git repository")
    os.makedirs(path, exist_ok=True)
    # The default branch comes from init.defaultBranch in the user's config unless given.
    options = dict(config=user_config_stack(home), default_branch=initial_branch.encode() if initial_branch else None)
    repo = Repo.init_bare(path, **options) if bare else Repo.init(path, **options)
    repo.close()
    return path


def default_clone_dir(url: str) -> str:
    """git's rule: the last path segment of the URL without a trailing `.git`."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".git"):
        name = name[: -len(".git")]
    if not name or name in (".", ".."):
        raise InvalidArgument(f"cannot derive a directory name from '{url}': pass a path")
    return name


def clone(
    url: str,
    path: str,
    home: str,
    branch: str | None,
    depth: int,
    credentials: Credentials | None,
    bare: bool,
    progress: Callable[[bytes], None],
) -> tuple[str, str]:
    """Clone into `path` (missing or an empty directory). On any failure nothing of the clone remains.

    Returns (HEAD commit or "", current branch or "").
    """
    from dulwich.client import get_transport_and_path

    clean_url, embedded = split_url(url)
    credentials = credentials or embedded
    created = not os.path.lexists(path)
    if not created:
        if not os.path.isdir(path):
            raise AlreadyExists(f"destination path '{path}' already exists and is not a directory")
        if os.listdir(path):
            raise AlreadyExists(f"destination path '{path}' already exists and is not an empty directory")
    parent = os.path.dirname(path.rstrip("/")) or "/"
    if not os.path.isdir(parent):
        raise NotFound(f"parent directory '{parent}' does not exist")
    try:
        config = user_config_stack(home)
        client, remote_path = get_transport_and_path(clean_url, config=config, **transport_kwargs(credentials))
        client.fetch = _fetching_in_one_pass(client.fetch)
        # origin_url: what lands in .git/config — the URL without any credentials.
        repo = client.clone(
            remote_path,
            path,
            mkdir=created,
            bare=bare,
            branch=branch,
            progress=progress,
            depth=depth or None,
            origin_url=clean_url,
        )
    except BaseException:
        _remove_clone(path, created)
        raise
    try:
        head = repo.refs.follow(b"HEAD")
        current = head[0][-1] if len(head[0]) > 1 else b""
        sha = head[1] or b""
        return sha.decode(), current.decode().removeprefix("refs/heads/")
    finally:
        repo.close()


def _fetching_in_one_pass(fetch):
    """client.fetch, with the target repository taking the pack in one pass (packs.py).

    dulwich's clone creates the repository itself and fetches into it right away: this is the only point
    between the two.
    """

    from .packs import receive_in_one_pass

    def fetch_into(path, target, *args, **kwargs):
        receive_in_one_pass(target)
        return fetch(path, target, *args, **kwargs)

    return fetch_into


def _remove_clone(path: str, created: bool) -> None:
    if created:
        shutil.rmtree(path, ignore_errors=True)
        return
    for name in os.listdir(path):  # the destination was an empty directory: empty it again
        target = os.path.join(path, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            os.unlink(target)
