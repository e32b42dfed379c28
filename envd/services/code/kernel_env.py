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
from pathlib import Path

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


def kernel_environment(prefix: str, ipython_dir: Path) -> dict[str, str]:
    """Kernels don't inherit the daemon's environment: a small clean one (sandbox vars come by §4.7)."""
    home = pwd.getpwuid(os.geteuid()).pw_dir
    return {
        "PATH": f"{prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "IPYTHONDIR": str(ipython_dir),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
