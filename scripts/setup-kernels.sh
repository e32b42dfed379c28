#!/usr/bin/env bash
# Jupyter kernels for the code-interpreter API (code-interpreter.md §4.3, §5): a venv with ipykernel,
# matplotlib, pandas, Pillow, orjson, bash_kernel, Deno (javascript + typescript) and JJava (java), the
# Debian packages for R (IRkernel) and the JDK, and every kernelspec under <prefix>/share/jupyter/kernels.
# Idempotent; quick when done already (stamp of the requirements + this script).
set -euo pipefail
prefix=${1:-/opt/envd-kernels}
here="$(dirname "$0")"
requirements="$here/kernels-requirements.txt"
stamp="$prefix/.envd-kernels-$(cat "$requirements" "$0" | sha256sum | cut -c1-16)"
specs="$prefix/share/jupyter/kernels"
installed() {
  for k in python3 bash deno java ir; do [[ -f "$specs/$k/kernel.json" ]] || return 1; done
}
# Kernels may run as the sandbox user (native code service), so the venv's interpreter must be one every
# account can run: Debian's, not one under root's 0700 home (pyenv). A venv on such an interpreter is rebuilt.
base=python3
if [[ -x /usr/bin/python3 ]]; then base=/usr/bin/python3; fi
if [[ $EUID -eq 0 && -x "$prefix/bin/python" ]] && ! runuser -u nobody -- "$prefix/bin/python" -c pass 2>/dev/null; then
  echo "rebuilding $prefix: its interpreter $(readlink -f "$prefix/bin/python") is not runnable by other users"
  rm -rf "$prefix"
fi
if [[ -f "$stamp" ]] && installed; then
  exit 0
fi

# R + IRkernel and a JDK with jdk.jshell (JJava's runtime) come from Debian.
need=()
for pkg in r-base-core r-cran-irkernel openjdk-17-jdk-headless; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  apt-get update -qq
  # openjdk's postinst links its man page there; minimal roots (the VM image) exclude /usr/share/man.
  mkdir -p /usr/share/man/man1
  apt_log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >"$apt_log" 2>&1; then
    tail -40 "$apt_log" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi

test -x "$prefix/bin/python" || "$base" -m venv "$prefix"
"$prefix/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
export PATH="$prefix/bin:$PATH"  # the spec installers call `jupyter`
# -> $specs/python3, argv pointing at this venv's python
"$prefix/bin/python" -m ipykernel install --sys-prefix >/dev/null
"$prefix/bin/python" -m bash_kernel.install --sys-prefix >/dev/null
# IRkernel's installer writes $specs/ir (sys_prefix = jupyter's prefix).
Rscript -e 'IRkernel::installspec(sys_prefix = TRUE, verbose = FALSE)' >/dev/null
# Deno's own installer only writes to the user's data dir: write the spec here (notes/kernels.md). No colour
# codes in results; bare `fs` imports; the module cache in the kernel user's home.
chmod +x "$prefix/bin/deno"
mkdir -p "$specs/deno"
cat > "$specs/deno/kernel.json" <<JSON
{"argv": ["$prefix/bin/deno", "jupyter", "--kernel", "--conn", "{connection_file}"],
 "display_name": "Deno", "language": "typescript",
 "env": {"NO_COLOR": "1", "DENO_UNSTABLE_BARE_NODE_BUILTINS": "1", "DENO_NO_UPDATE_CHECK": "1",
         "DENO_DIR": "\${HOME}/.cache/deno"}}
JSON
# jjava's wheel ships $specs/java; opening java.util lets the daemon set per-execution env vars in it (§4.7).
"$prefix/bin/python" - "$specs/java/kernel.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec.setdefault("env", {})["JJAVA_JVM_OPTS"] = "--add-opens=java.base/java.util=ALL-UNNAMED"
json.dump(spec, open(sys.argv[1], "w"), indent=1)
PY
rm -f "$prefix"/.envd-kernels-*
touch "$stamp"
echo "kernels ready in $prefix"
