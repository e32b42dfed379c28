"""run_code in javascript, typescript, r, bash and java through the unmodified `e2b-code-interpreter` SDK
(debug mode), on the real kernels `make kernels` installs (Deno, IRkernel, bash_kernel, JJava).

Spec: code-interpreter.md §1.3-§1.6, §4.3-§4.7, §10; kernel facts: notes/kernels.md. One daemon serves the
module (the SDK's debug mode needs port 49999, see test_sdk_code_interpreter.py); each language's default
context is reused across the tests, created contexts are removed again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from e2b import SandboxException, TimeoutException
from e2b_code_interpreter import Sandbox


pytestmark = pytest.mark.sdk

SPECS = Path("/opt/envd-kernels/share/jupyter/kernels")
ODD_VALUE = "b'a\"r \\ é\tx"  # quotes, a backslash, non-ASCII and a tab survive the injected statements (Q9)


@dataclass(frozen=True)
class Lang:
    name: str
    spec: str
    hello: str  # prints hi, leaves 1 + 1 as its value
    hello_value: str  # the text of that value's result
    set_state: str  # counter = 41
    read_state: str  # prints counter + 1
    raise_error: str
    error: tuple[str, str]  # (name, a part of the value)
    syntax_error: str
    syntax_error_name: str
    show_cwd: str  # prints the working directory
    show_env: str  # prints env var {k} or "unset"
    sleep: str  # blocks for minutes
    keeps_state_on_interrupt: bool


LANGS = [
    Lang("javascript", "deno", "console.log('hi'); 1 + 1", "2", "var counter = 41", "console.log(counter + 1)",
         "throw new TypeError('boom')", ("TypeError", "boom"), "let = ;", "SyntaxError",
         "console.log(Deno.cwd())", "console.log(Deno.env.get({k!r}) ?? 'unset')",
         "await new Promise((resolve) => setTimeout(resolve, 300_000))", False),
    Lang("typescript", "deno", "const greeting: string = 'hi'; console.log(greeting); 1 + 1", "2",
         "let counter: number = 41", "console.log(counter + 1)",
         "throw new RangeError('boom')", ("RangeError", "boom"), "const x: number = ;", "SyntaxError",
         "console.log(Deno.cwd())", "console.log(process.env[{k!r}] ?? 'unset')",
         "await new Promise<void>((resolve) => setTimeout(resolve, 300_000))", False),
    Lang("r", "ir", "print('hi'); 1 + 1", "[1] 2", "counter <- 41", "cat(counter + 1, '\\n')",
         "stop('boom')", ("Error", "boom"), "1 +", "Error",
         "cat(getwd(), '\\n')", "cat(Sys.getenv({k!r}, unset = 'unset'), '\\n')",
         "Sys.sleep(300)", True),
    Lang("bash", "bash", "echo hi", "", "counter=41", "echo $((counter + 1))",
         "ls /no/such/dir", ("NonZeroExitCode", "code 2"), "echo 'unclosed", "SyntaxError",
         "pwd", "echo \"${{{k}-unset}}\"", "sleep 300", True),
    Lang("java", "java", 'System.out.println("hi"); 1 + 1', "2", "int counter = 41;",
         "System.out.println(counter + 1);",
         'Integer.parseInt("nope")', ("NumberFormatException", 'For input string: "nope"'),
         "int y = ;", "CompilationException",
         'System.out.println(System.getProperty("user.dir"));',
         # upstream sets system properties (§4.7); the process env is set too
         'System.out.println(System.getenv().getOrDefault("{k}", "unset") + " " + System.getProperty("{k}", "unset"));',
         "Thread.sleep(300_000);", True),
]
BY_NAME = {lang.name: lang for lang in LANGS}


def stdout(execution) -> str:
    return "".join(execution.logs.stdout)


@pytest.fixture(scope="module")
def kernels_installed() -> None:
    missing = [lang.spec for lang in LANGS if not (SPECS / lang.spec / "kernel.json").exists()]
    if missing:
        pytest.fail(f"kernelspecs {missing} are not installed: run `make kernels`")


@pytest.fixture(params=[lang.name for lang in LANGS])
def lang(request, kernels_installed, sbx: Sandbox) -> Lang:
    return BY_NAME[request.param]


def run(sbx: Sandbox, lang: Lang, code: str, **kwargs):
    kwargs.setdefault("timeout", 60)
    if "context" not in kwargs:
        kwargs["language"] = lang.name
    return sbx.run_code(code, **kwargs)


# -- basics ---------------------------------------------------------------------------------------------


def test_default_javascript_context_is_created_at_start(sbx: Sandbox, kernels_installed) -> None:
    deadline = time.monotonic() + 60  # §4.4: created in the background right after python's
    while [c.language for c in sbx.list_code_contexts()][:2] != ["python", "javascript"]:
        assert time.monotonic() < deadline, [c.language for c in sbx.list_code_contexts()]
        time.sleep(0.2)
    js = sbx.list_code_contexts()[1]
    assert js.cwd == "/home/user"
    # language="js" runs in that very context
    run(sbx, BY_NAME["javascript"], "var marker_of_default = 5")
    assert sbx.run_code("marker_of_default", context=js, timeout=60).text == "5"


def test_hello_prints_and_returns(sbx: Sandbox, lang: Lang) -> None:
    execution = run(sbx, lang, lang.hello)
    assert execution.error is None, execution.error
    assert stdout(execution) == ('[1] "hi"\n' if lang.name == "r" else "hi\n")
    if lang.hello_value:
        assert execution.results[0].text == lang.hello_value
        # R's values are display data (IRkernel), the others' the main result
        assert execution.results[0].is_main_result is (lang.name != "r")
    else:
        assert execution.results == []


def test_state_persists_across_cells(sbx: Sandbox, lang: Lang) -> None:
    assert run(sbx, lang, lang.set_state).error is None
    assert stdout(run(sbx, lang, lang.read_state)).strip() == "42"


def test_errors_have_name_value_and_no_colour(sbx: Sandbox, lang: Lang) -> None:
    execution = run(sbx, lang, lang.raise_error)
    assert execution.error is not None
    assert execution.error.name == lang.error[0]
    assert lang.error[1] in execution.error.value
    assert "\x1b" not in execution.error.traceback
    syntax = run(sbx, lang, lang.syntax_error).error
    assert syntax is not None and syntax.name == lang.syntax_error_name and syntax.value, syntax
    assert "\x1b" not in syntax.traceback
    assert run(sbx, lang, lang.hello).error is None  # the context still works


def test_typescript_import_and_top_level_await(sbx: Sandbox, kernels_installed) -> None:
    code = ('import { join } from "node:path";\n'
            'interface Box { v: string }\n'
            'const box: Box = { v: await Promise.resolve(join("a", "b")) };\n'
            "box.v")
    execution = sbx.run_code(code, language="ts", timeout=60)
    assert execution.error is None, execution.error
    assert execution.text == "a/b"
    assert sbx.run_code("await Promise.resolve('Hello World!')", language="ts", timeout=60).text == "Hello World!"


def test_javascript_static_import_of_node_builtins(sbx: Sandbox, kernels_installed) -> None:
    code = "import fs from 'fs';\nimport { sep } from 'node:path';\nfs.existsSync('/home/user') + sep"
    execution = sbx.run_code(code, language="js", timeout=60)
    assert execution.error is None, execution.error
    assert execution.text == "true/"


def test_javascript_imports_local_node_modules_with_a_package_json(
    sbx: Sandbox, kernels_installed, tmp_path: Path
) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"name": "app", "dependencies": {"greet": "1.0.0"}}))
    pkg = tmp_path / "node_modules" / "greet"
    pkg.mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "greet", "version": "1.0.0", "main": "index.js"}))
    (pkg / "index.js").write_text("module.exports = (name) => `hello ${name}`;\n")
    created = sbx.create_code_context(language="js", cwd=str(tmp_path))
    try:
        execution = sbx.run_code("import greet from 'greet';\ngreet('deno')", context=created, timeout=60)
        assert execution.error is None, execution.error
        assert execution.text == "hello deno"
    finally:
        sbx.remove_code_context(created)


# -- working directory ----------------------------------------------------------------------------------


def test_cwd_of_default_and_created_contexts(sbx: Sandbox, lang: Lang, tmp_path: Path) -> None:
    assert stdout(run(sbx, lang, lang.show_cwd)).strip() == "/home/user"
    workdir = tmp_path / "work dir 'q'"  # spaces and quotes: escaped, not spliced (Q9)
    workdir.mkdir()
    created = sbx.create_code_context(language=lang.name, cwd=str(workdir))
    try:
        assert (created.language, created.cwd) == (lang.name, str(workdir))
        # an injected env var (an internal cell) does not count as an execution (§4.5)
        first = run(sbx, lang, lang.show_cwd, context=created, envs={"CWD_TEST": "1"})
        assert stdout(first).strip() == str(workdir)
        assert first.execution_count == 1
        assert run(sbx, lang, lang.show_cwd, context=created).execution_count == 2
    finally:
        sbx.remove_code_context(created)


def test_missing_cwd_fails_creation_and_leaves_nothing(sbx: Sandbox, lang: Lang) -> None:
    before = [c.id for c in sbx.list_code_contexts()]
    with pytest.raises(SandboxException, match="Failed to set working directory"):
        sbx.create_code_context(language=lang.name, cwd="/no/such/dir")
    assert [c.id for c in sbx.list_code_contexts()] == before  # Q8: nothing half-created


# -- environment variables ------------------------------------------------------------------------------


def test_per_execution_env_vars_are_restored(sbx: Sandbox, lang: Lang) -> None:
    show = lang.show_env.format(k="PER_EXEC")
    seen = stdout(run(sbx, lang, show, envs={"PER_EXEC": ODD_VALUE})).strip()
    assert seen == (f"{ODD_VALUE} {ODD_VALUE}" if lang.name == "java" else ODD_VALUE)
    after = stdout(run(sbx, lang, show)).strip()
    assert after == ("unset unset" if lang.name == "java" else "unset")


def test_sandbox_env_vars_and_overrides(sbx: Sandbox, lang: Lang, code_daemon) -> None:
    r = httpx.post(f"{code_daemon.url}/init", json={"envVars": {"SBX_LANG": "sandbox"}})
    assert r.status_code == 204
    show = lang.show_env.format(k="SBX_LANG")
    twice = (lambda v: f"{v} {v}") if lang.name == "java" else (lambda v: v)
    assert stdout(run(sbx, lang, show)).strip() == twice("sandbox")
    assert stdout(run(sbx, lang, show, envs={"SBX_LANG": "exec"})).strip() == twice("exec")
    assert stdout(run(sbx, lang, show)).strip() == twice("sandbox")


# -- timeouts -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_timeout_interrupts_and_the_context_stays_usable(sbx: Sandbox, lang: Lang) -> None:
    run(sbx, lang, lang.set_state)
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        run(sbx, lang, lang.sleep, timeout=3)
    assert time.monotonic() - started < 15
    after = run(sbx, lang, lang.read_state, timeout=30)
    if lang.keeps_state_on_interrupt:
        assert stdout(after).strip() == "42"
    else:  # Deno: the interrupt is a restart, state is gone (like upstream's JavaScript kernel, §1.4)
        assert after.error is not None and after.error.name == "ReferenceError", after.error
        assert run(sbx, lang, lang.hello, timeout=30).text == "2"
    assert time.monotonic() - started < 45
