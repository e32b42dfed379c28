"""Path resolution (spec/envd.md §5)."""

import pytest

from envd.paths import PathError, resolve_path

HOME = "/home/user"


@pytest.mark.parametrize(
    "raw, workdir, expected",
    [
        ("a.txt", None, "/home/user/a.txt"),
        ("a/../b/./c/", None, "/home/user/b/c"),
        ("/a/../b/", None, "/a/../b/"),  # absolute paths are not cleaned
        ("", None, "/home/user"),
        ("", "/work", "/work"),
        ("", "proj", "/home/user/proj"),  # a relative default workdir is relative to home
        ("rel", "/work", "/home/user/rel"),  # relative paths never use the workdir
        ("~", None, "/home/user"),
        ("~/x/../y", None, "/home/user/y"),
    ],
)
def test_resolution(raw, workdir, expected):
    assert resolve_path(raw, HOME, "user", workdir) == expected


def test_other_users_home_is_refused():
    with pytest.raises(PathError, match="cannot expand user-specific home dir"):
        resolve_path("~root/x", HOME, "user", None)
