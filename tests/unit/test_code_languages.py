"""Per-language statements and error shapes (code-interpreter.md §4.2-§4.7, Q9; notes/kernels.md).

The env statements are run by the real interpreters (bash, Rscript, deno, java) with hostile values: what the
program reads back must be exactly what was set, and the unset statement must remove it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from envd.services.code import languages
from envd.services.code.routing import NO_REPLY

PREFIX = Path("/opt/envd-kernels")
# Quotes of every kind, backslashes, shell and format syntax, a newline, a tab, non-ASCII beyond the BMP.
HOSTILE = "b'a\"r \\ \\n $HOME `id` $(id) %s ${x} é\t😀\nsecond line"
KEY = "ENVD_TEST_KEY"


def _run(argv: list[str], **kwargs) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _need(path: str | None, what: str) -> str:
    if not path or not os.path.exists(path):
        pytest.fail(f"{what} is missing: run `make kernels`")
    return path


def test_normalize_and_kernel_specs() -> None:
    assert [languages.normalize(x) for x in (None, "", " JS ", "ts", "R", "Java")] == [
        "python", "python", "javascript", "typescript", "r", "java"]
    assert {lang: languages.kernel_spec_name(lang) for lang in ("python", "javascript", "typescript", "r",
                                                                "bash", "java", "cobol")} == {
        "python": "python3", "javascript": "deno", "typescript": "deno", "r": "ir", "bash": "bash",
        "java": "java", "cobol": "cobol"}


def test_cwd_rules_and_interrupts() -> None:
    assert [languages.cwd_must_exist(x) for x in ("python", "javascript", "r", "bash", "java", "cobol")] == [
        False, True, True, True, True, False]
    assert languages.interrupt_restarts("typescript") and not languages.interrupt_restarts("r")
    assert languages.counts_silent_cells("java") and not languages.counts_silent_cells("python")


def test_python_statements_round_trip() -> None:
    env: dict[str, str] = {}
    code = languages.set_env_statement("python", KEY, HOSTILE).replace("__import__('os').environ", "env")
    exec(code, {"env": env})
    assert env == {KEY: HOSTILE}
    exec(languages.unset_env_statement("python", KEY).replace("__import__('os').environ", "env"), {"env": env})
    assert env == {}


def test_bash_statements_round_trip() -> None:
    script = "\n".join([
        languages.set_env_statement("bash", KEY, HOSTILE),
        f'printf "%s|" "${KEY}"; sh -c \'printf "%s|" "${KEY}"\'',  # the shell and a child see it
        languages.unset_env_statement("bash", KEY),
        f'printf "%s" "${{{KEY}-unset}}"',
    ])
    assert languages.set_env_statement("bash", KEY, HOSTILE).count("\n") == 0  # one line whatever the value
    assert _run(["bash", "-c", script]) == f"{HOSTILE}|{HOSTILE}|unset"


def test_r_statements_round_trip() -> None:
    rscript = _need(shutil.which("Rscript"), "Rscript (r-base-core)")
    script = "\n".join([
        languages.set_env_statement("r", KEY, HOSTILE),
        f'cat(Sys.getenv("{KEY}"), "|", system("printf %s \\"${KEY}\\"", intern = TRUE), "|", sep = "")',
        languages.unset_env_statement("r", KEY),
        f'cat(Sys.getenv("{KEY}", unset = "unset"))',
    ])
    # `system(intern=TRUE)` splits lines: compare the child's view line by line
    out = _run([rscript, "-e", script], env={**os.environ, "LANG": "C.UTF-8"})
    own, child, rest = out.split("|")
    assert own == HOSTILE and rest == "unset"
    assert child == HOSTILE.replace("\n", "")


def test_deno_statements_round_trip() -> None:
    deno = _need(str(PREFIX / "bin" / "deno"), "deno")
    show = f'Deno.stdout.writeSync(new TextEncoder().encode((Deno.env.get("{KEY}") ?? "unset") + "|"));'
    script = "\n".join([
        languages.set_env_statement("javascript", KEY, HOSTILE), show,
        languages.unset_env_statement("typescript", KEY), show,
    ])
    out = _run([deno, "eval", script], env={**os.environ, "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1"})
    assert out == f"{HOSTILE}|unset|"


def test_java_statements_round_trip(tmp_path: Path) -> None:
    java = _need(shutil.which("java"), "java (openjdk-17-jdk-headless)")
    show = (f'System.out.print(System.getenv().getOrDefault("{KEY}", "unset") + "|" '
            f'+ System.getProperty("{KEY}", "unset") + "|");')
    source = tmp_path / "Main.java"
    source.write_text("\n".join([
        "public class Main { @SuppressWarnings(\"unchecked\") public static void main(String[] a) throws Exception {",
        languages.set_env_statement("java", KEY, HOSTILE), show,
        # children started through ProcessBuilder see the process env
        f'var pb = new ProcessBuilder("sh", "-c", "printf %s \\"${KEY}\\""); pb.environment();',
        'System.out.print(new String(pb.start().getInputStream().readAllBytes(), "UTF-8") + "|");',
        languages.unset_env_statement("java", KEY), show,
        "}}",
    ]), encoding="utf-8")
    out = _run([java, "--add-opens=java.base/java.util=ALL-UNNAMED", "-Dfile.encoding=UTF-8",
                "-Dstdout.encoding=UTF-8", str(source)])
    assert out == f"{HOSTILE}|{HOSTILE}|{HOSTILE}|unset|unset|"


def test_unknown_languages_get_no_statements() -> None:
    assert languages.set_env_statement("cobol", "K", "V") is None
    assert languages.unset_env_statement("cobol", "K") is None


def error(name: str, value: str, traceback: str = "") -> dict:
    return {"type": "error", "name": name, "value": value, "traceback": traceback}


@pytest.mark.parametrize(("language", "kernel_error", "expected"), [
    # Deno 2.7: a parse error's diagnostic is both ename and evalue
    ("typescript", error("Expression expected at file:///repl.tsx:1:7\n\n  let = ;\n        ~",
                         "Expression expected at file:///repl.tsx:1:7\n\n  let = ;\n        ~"),
     error("SyntaxError", "Expression expected at file:///repl.tsx:1:7",
           "Expression expected at file:///repl.tsx:1:7\n\n  let = ;\n        ~")),
    ("javascript", error("TypeError", "boom", "Stack trace:\nTypeError: boom"),
     error("TypeError", "boom", "Stack trace:\nTypeError: boom")),
    # bash_kernel: only the exit status of the last command
    ("bash", error("", "2"), error("NonZeroExitCode", "Command exited with code 2")),
    ("bash", dict(NO_REPLY), error("SyntaxError", "Incomplete input: an unclosed quote, bracket or block?")),
    # JJava, colour codes included
    ("java", error("RuntimeException", 'java.lang.NumberFormatException, For input string: "nope"',
                   '\x1b[1m\x1b[31mjava.lang.NumberFormatException: For input string: "nope"\x1b[0m'),
     error("NumberFormatException", 'For input string: "nope"',
           'java.lang.NumberFormatException: For input string: "nope"')),
    ("java", error("CompilationException", "[snippet: [int y = ;], status: REJECTED]",
                   "\x1b[39m\x1b[1m|   \x1b[39m\x1b[1mint y = ;\x1b[0m\n"
                   "\x1b[1m\x1b[31millegal start of expression\x1b[0m\n"),
     error("CompilationException", "illegal start of expression", "|   int y = ;\nillegal start of expression\n")),
    ("r", error("ERROR", "Error in eval(expr, envir, enclos): boom\n", "Error in eval(expr, envir, enclos): boom\n"),
     error("Error", "Error in eval(expr, envir, enclos): boom", "Error in eval(expr, envir, enclos): boom\n")),
    # synthetic service errors and Python's pass unchanged
    ("java", error("ContextRestarting", "Context was restarted"), error("ContextRestarting", "Context was restarted")),
    ("python", error("NameError", "x", "\x1b[0m"), error("NameError", "x", "\x1b[0m")),
])
def test_error_shapes(language: str, kernel_error: dict, expected: dict) -> None:
    assert languages.error_event(language, kernel_error) == expected
