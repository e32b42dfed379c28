#!/usr/bin/env bash
# Jupyter kernels for the code-interpreter API (code-interpreter.md §5, python): a venv with ipykernel,
# matplotlib, pandas, Pillow, orjson and its registered kernelspec. Idempotent; quick when done already.
set -euo pipefail
prefix=${1:-/opt/envd-kernels}
requirements="$(dirname "$0")/kernels-requirements.txt"
stamp="$prefix/.envd-kernels-$(sha256sum "$requirements" | cut -c1-16)"
# Kernels may run as the sandbox user (native code service), so the venv's interpreter must be one every
# account can run: Debian's, not one under root's 0700 home (pyenv). A venv on such an interpreter is rebuilt.
base=python3
if [[ -x /usr/bin/python3 ]]; then base=/usr/bin/python3; fi
if [[ $EUID -eq 0 && -x "$prefix/bin/python" ]] && ! runuser -u nobody -- "$prefix/bin/python" -c pass 2>/dev/null; then
  echo "rebuilding $prefix: its interpreter $(readlink -f "$prefix/bin/python") is not runnable by other users"
  rm -rf "$prefix"
fi
if [[ -f "$stamp" && -f "$prefix/share/jupyter/kernels/python3/kernel.json" ]]; then
  exit 0
fi
test -x "$prefix/bin/python" || "$base" -m venv "$prefix"
"$prefix/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
# -> <prefix>/share/jupyter/kernels/python3, argv pointing at this venv's python
"$prefix/bin/python" -m ipykernel install --sys-prefix >/dev/null
rm -f "$prefix"/.envd-kernels-*
touch "$stamp"
echo "kernels ready in $prefix"
