#!/usr/bin/env bash
# Jupyter kernels for the code-interpreter API (code-interpreter.md §5, python): a venv with ipykernel,
# matplotlib, pandas, Pillow, orjson and its registered kernelspec. Idempotent; quick when done already.
set -euo pipefail
prefix=${1:-/opt/envd-kernels}
requirements="$(dirname "$0")/kernels-requirements.txt"
stamp="$prefix/.envd-kernels-$(sha256sum "$requirements" | cut -c1-16)"
if [[ -f "$stamp" && -f "$prefix/share/jupyter/kernels/python3/kernel.json" ]]; then
  exit 0
fi
test -x "$prefix/bin/python" || python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
# -> <prefix>/share/jupyter/kernels/python3, argv pointing at this venv's python
"$prefix/bin/python" -m ipykernel install --sys-prefix >/dev/null
rm -f "$prefix"/.envd-kernels-*
touch "$stamp"
echo "kernels ready in $prefix"
