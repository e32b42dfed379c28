"""Env-var store rules (spec/envd.md §1.5), Basic parsing (§2.5), and the command line (§1.2)."""

import base64
import subprocess
import sys

import pytest

from envd import ENVD_VERSION
from envd.__main__ import config_from_args, parse_args
from envd.auth.users import parse_basic_username
from envd.state import EnvStore


def test_user_envs_are_replaced_and_internal_ones_win():
    store = EnvStore()
    store.set_internal("E2B_SANDBOX", "true")
    store.replace_user({"A": "1", "B": "2", "E2B_SANDBOX": "hijack"})
    assert store.all() == {"A": "1", "B": "2", "E2B_SANDBOX": "true"}
    store.replace_user({"C": "3"})
    assert store.all() == {"C": "3", "E2B_SANDBOX": "true"}


@pytest.mark.parametrize(
    "header, expected",
    [
        ("Basic " + base64.b64encode(b"user:").decode(), "user"),
        ("basic " + base64.b64encode(b"root:ignored").decode(), "root"),
        ("Bearer abc", None),
        ("Basic !!!notbase64", None),
        ("Basic " + base64.b64encode(b"nocolon").decode(), None),
        (None, None),
    ],
)
def test_basic_username(header, expected):
    assert parse_basic_username(header) == expected


def test_go_style_flags():
    args = parse_args(["-port", "1234", "-isnotfc", "--verbose=true", "-no-cgroups=false", "--default-user=user"])
    config = config_from_args(args)
    assert (config.port, config.is_not_fc, config.verbose, config.no_cgroups) == (1234, True, True, False)
    assert config.default_user == "user"
    assert config_from_args(parse_args([])).default_user == "root"


def test_version_flag_prints_contract_version():
    out = subprocess.run([sys.executable, "-m", "envd", "-version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"{ENVD_VERSION}\n" == "0.6.13\n"


def test_unknown_flag_exits_2():
    result = subprocess.run([sys.executable, "-m", "envd", "-bogus"], capture_output=True, text=True)
    assert result.returncode == 2 and "bogus" in result.stderr


def test_user_lookups_notice_new_accounts():
    import pwd

    from envd.auth.users import UnknownUser, lookup_user

    name = "envd-cache-probe"
    subprocess.run(["userdel", "-r", name], capture_output=True)
    with pytest.raises(UnknownUser):
        lookup_user(name)
    subprocess.run(["useradd", "--no-create-home", name], check=True)
    try:
        assert lookup_user(name).uid == pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], check=True)
    with pytest.raises(UnknownUser):
        lookup_user(name)
