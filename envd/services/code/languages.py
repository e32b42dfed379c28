"""Per-language facts (code-interpreter.md §4.2-§4.7): names, kernel specs, cwd and env-var statements, and
how each kernel's errors and interrupts behave (notes/kernels.md).

Every value spliced into kernel code is escaped for that language (Q9), so quotes, backslashes, newlines and
non-ASCII text survive as they are.
"""

from __future__ import annotations

import json
import re

from .routing import NO_REPLY

DEFAULT_LANGUAGE = "python"
_ALIASES = {"js": "javascript", "ts": "typescript"}
# §4.3: the kernelspec each language runs on (names as `make kernels` installs them). TypeScript shares the
# Deno kernel with JavaScript but is its own language for contexts (own default context, own state).
_KERNEL_SPECS = {
    "python": "python3",
    "javascript": "deno",
    "typescript": "deno",
    "r": "ir",
    "bash": "bash",
    "java": "java",
}
# Deno's kernel dies on SIGINT and wedges on a message-mode interrupt while awaiting (notes/kernels.md): an
# interrupt there is a restart (state lost, like upstream's JavaScript kernel, §1.4).
_RESTART_TO_INTERRUPT = {"javascript", "typescript"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def normalize(language: str | None) -> str:
    """§4.2: null/empty -> python; lower-cased and trimmed; js/ts aliases."""
    if not language or not language.strip():
        return DEFAULT_LANGUAGE
    lowered = language.strip().lower()
    return _ALIASES.get(lowered, lowered)


def kernel_spec_name(language: str) -> str:
    return _KERNEL_SPECS.get(language, language)


def cwd_must_exist(language: str) -> bool:
    """§1.6, §4.6: a missing cwd fails creation, except in Python (IPython's `%cd` only prints there) and
    unknown languages (upstream applies no cwd to them). Kernels are launched in the cwd itself, which also
    gives Java its `user.dir` and survives restarts (Q4)."""
    return language in _KERNEL_SPECS and language != "python"


def traceback_joiner(language: str) -> str:
    """§1.4: IPython's traceback entries carry their newlines; the other kernels send one line per entry."""
    return "" if language == "python" else "\n"


def counts_silent_cells(language: str) -> bool:
    """JJava advances its execution counter for silent cells too; the daemon counts user cells itself."""
    return language == "java"


def interrupt_restarts(language: str) -> bool:
    return language in _RESTART_TO_INTERRUPT


# -- string literals --------------------------------------------------------------------------------------


def _js(text: str) -> str:
    return json.dumps(text)  # ASCII-only, a valid JS (and TS) string literal


def _java(text: str) -> str:
    # Octal escapes for control characters: `\uXXXX` is unescaped before lexing and would end the line.
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        elif ord(ch) > 0x7E:
            out.append("".join(f"\\u{unit:04x}" for unit in _utf16(ch)))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _r(text: str) -> str:
    # R refuses \x escapes next to \u ones in one literal: \u{...} for all but the named escapes.
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif ord(ch) < 0x20 or ord(ch) >= 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}" if ord(ch) <= 0xFFFF else f"\\U{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _bash(text: str) -> str:
    """ANSI-C quoting ($'...'): one line whatever the value holds."""
    out = []
    for ch in text:
        if ch in "'\\":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


# -- statements -------------------------------------------------------------------------------------------


# Java: the process env behind System.getenv() is an unmodifiable wrapper; with java.util opened (the java
# kernelspec's JJAVA_JVM_OPTS, scripts/setup-kernels.sh) its backing map `m` is writable. System properties
# are set too (what upstream uses, §4.7).
def _java_env(call: str) -> str:
    """A block: JShell lets top-level code throw checked exceptions, and nothing leaks into user scope."""
    return ('{ var m = System.getenv().getClass().getDeclaredField("m"); m.setAccessible(true); '
            f'((java.util.Map<String, String>) m.get(System.getenv())).{call}; }}')


def set_env_statement(language: str, key: str, value: str) -> str | None:
    """One statement setting K=V in the kernel's process env; None for languages without one (§4.7).

    `__import__` keeps the name `os` out of the Python user's namespace.
    """
    if language == "python":
        return f"__import__('os').environ[{key!r}] = {value!r}"
    if language in ("javascript", "typescript"):
        return f"Deno.env.set({_js(key)}, {_js(value)});"
    if language == "r":
        return f"invisible(do.call(Sys.setenv, structure(list({_r(value)}), names = {_r(key)})))"
    if language == "bash":
        return f"export {_bash(key + '=' + value)}"
    if language == "java":
        return (f"System.setProperty({_java(key)}, {_java(value)}); "
                + _java_env(f"put({_java(key)}, {_java(value)})"))
    return None


def unset_env_statement(language: str, key: str) -> str | None:
    if language == "python":
        return f"__import__('os').environ.pop({key!r}, None)"
    if language in ("javascript", "typescript"):
        return f"Deno.env.delete({_js(key)});"
    if language == "r":
        return f"invisible(Sys.unsetenv({_r(key)}))"
    if language == "bash":
        return f"unset -v {_bash(key)}"
    if language == "java":
        return f"System.clearProperty({_java(key)}); " + _java_env(f"remove({_java(key)})")
    return None


# -- errors -----------------------------------------------------------------------------------------------


def error_event(language: str, event: dict) -> dict:
    """A kernel-reported `error` event in the shape users expect (§1.4: the exception's class name, its
    message, a traceback without colour codes). Python's come right from IPython already."""
    if language == "python" or language not in _KERNEL_SPECS:
        return event
    name, value = event["name"], event["value"]
    traceback = _ANSI.sub("", event["traceback"])
    if language in ("javascript", "typescript") and name and (name == value or "\n" in name or " " in name):
        # Deno reports a parse error with the whole diagnostic as both ename and evalue.
        name, value, traceback = "SyntaxError", value.split("\n", 1)[0], traceback or value
    elif language == "bash" and not name and value.isdigit():
        # bash_kernel: the cell's last command failed; only its exit status comes back.
        name, value = "NonZeroExitCode", f"Command exited with code {value}"
    elif language == "bash" and name == NO_REPLY["name"]:
        name, value = "SyntaxError", "Incomplete input: an unclosed quote, bracket or block?"
    elif language == "java" and name == "RuntimeException" and (match := _JAVA_THROWN.match(value)):
        # JJava: "java.lang.NumberFormatException, For input string: ..." for whatever the cell threw.
        name, value = match.group(1).rsplit(".", 1)[-1], match.group(2) or ""
    elif language == "java" and name == "CompilationException":
        # The compiler's diagnostics are in the traceback, under the rejected source (lines starting "|").
        diagnostics = [line for line in traceback.splitlines() if line.strip() and not line.startswith("|")]
        value = "\n".join(diagnostics) or value
    elif language == "r" and name == "ERROR":
        # IRkernel: "Error in eval(expr, envir, enclos): boom\n"
        name, value = "Error", value.strip()
    return {**event, "name": name, "value": value, "traceback": traceback}


_JAVA_THROWN = re.compile(r"^([\w.$]+)(?:, (.*))?$", re.DOTALL)
