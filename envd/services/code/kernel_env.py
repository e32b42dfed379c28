"""Where kernels come from and what they start with (code-interpreter.md §5).

`make kernels` (scripts/setup-kernels.sh) builds a venv (default /opt/envd-kernels) with ipykernel, matplotlib,
pandas, Pillow, bash_kernel, Deno and JJava, installs R/IRkernel and the JDK from Debian, and registers every
kernelspec under <prefix>/share/jupyter/kernels (python3, deno, ir, bash, java; names in languages.py). At
start the daemon writes its IPython profile (§5.5 config, §5.7 startup scripts, shipped in
envd/services/code/ipython/) into a directory of its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

from ...auth.users import User

PROFILE_SOURCE = Path(__file__).parent / "ipython"


def kernel_dirs(prefix: str) -> list[str]:
    return [str(Path(prefix) / "share" / "jupyter" / "kernels")]


def write_ipython_dir(target: Path) -> Path:
    """A fresh IPYTHONDIR with our profile_default (config + startup scripts); blocking, run in a thread."""
    profile = target / "profile_default"
    startup = profile / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    for old in startup.glob("*.py"):
        old.unlink()
    shutil.copyfile(PROFILE_SOURCE / "ipython_kernel_config.py", profile / "ipython_kernel_config.py")
    for script in sorted((PROFILE_SOURCE / "startup").glob("*.py")):
        shutil.copyfile(script, startup / script.name)
    return target


def user_state_dir(user: User) -> Path:
    """A private directory of `user`'s own for its kernels: their IPYTHONDIR (`ipython/`) and connection files.

    Made in the temp dir, not the daemon's work dir, which may sit where the user cannot reach it (/run/e2b is
    0755, but a work dir inside a root-only tree is not). Blocking, run in a thread.
    """
    path = Path(tempfile.mkdtemp(prefix=f"envd-code-{user.name}-"))  # 0700
    write_ipython_dir(path / "ipython")
    for entry in [path, *path.rglob("*")]:
        os.lchown(entry, user.uid, user.gid)  # IPython writes its history and security dir there
    return path


def kernel_environment(prefix: str, ipython_dir: Path, user: User | None = None) -> dict[str, str]:
    """Kernels don't inherit the daemon's environment: a small clean one (sandbox vars come by §4.7).

    `user`: the account the kernel runs as (None: the daemon's own), whose HOME/USER/LOGNAME it gets.
    """
    if user is None:
        entry = pwd.getpwuid(os.geteuid())
        user = User(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)
    return {
        "PATH": f"{prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": user.home,
        "USER": user.name,
        "LOGNAME": user.name,
        "LANG": "C.UTF-8",
        "IPYTHONDIR": str(ipython_dir),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
