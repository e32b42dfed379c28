"""`run_code` and code contexts through the unmodified `e2b-code-interpreter` SDK (2.11.5) in debug mode.

Debug mode means `http://localhost:49999` for the code-interpreter API (the SDK's JUPYTER_PORT; setting
E2B_SANDBOX_URL would send those requests to envd's port too, so it is left unset), so the module starts a
daemon of its own with `-code-port 49999` and fails clearly if that port is taken. One daemon and a handful
of kernels serve the whole module. Spec: code-interpreter.md §1, §2, §4, §6, §10.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from e2b import InvalidArgumentException, NotFoundException, SandboxException, TimeoutException
from e2b_code_interpreter import AsyncSandbox, Sandbox

from tests.conftest import Daemon

pytestmark = pytest.mark.sdk

CODE_URL = "http://localhost:49999"  # what the SDK's debug mode dials (the module's daemon: e2e/conftest.py)

# A 1x1 PNG and JPEG, made once here instead of shipping files.
PNG_1x1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def ctx(sbx: Sandbox):
    """A python context of the module's own, next to the default one."""
    return sbx.create_code_context()


# -- basics ---------------------------------------------------------------------------------------------


def test_state_persists_in_the_default_context(sbx: Sandbox) -> None:
    assert sbx.run_code("x =1; x").text == "1"
    sbx.run_code("shared_value = 1")
    assert sbx.run_code("shared_value += 1; shared_value").text == "2"


def test_default_cwd_is_home_user(sbx: Sandbox) -> None:
    execution = sbx.run_code("!pwd")
    assert "".join(execution.logs.stdout).strip() == "/home/user"  # IPython runs `!` in a pty: \r\n
    assert sbx.run_code("import os; os.getcwd()").text == "/home/user"


def test_string_result_loses_its_quotes(sbx: Sandbox) -> None:
    assert sbx.run_code("'bar'").text == "bar"
    assert sbx.run_code('"it\'s"').text == "it's"


def test_callbacks_arrive_in_stream_order(sbx: Sandbox) -> None:
    seen: list[tuple[str, str]] = []
    code = (
        "import sys\n"
        "print('one', flush=True)\n"
        "print('two', file=sys.stderr, flush=True)\n"
        "display('shown')\n"
        "print('three', flush=True)\n"
        "'last'"
    )
    execution = sbx.run_code(
        code,
        on_stdout=lambda m: seen.append(("stdout", m.line)),
        on_stderr=lambda m: seen.append(("stderr", m.line)),
        on_result=lambda r: seen.append(("result", r.text)),
        on_error=lambda e: seen.append(("error", e.name)),
    )
    assert seen == [("stdout", "one\n"), ("stderr", "two\n"), ("result", "shown"), ("stdout", "three\n"),
                    ("result", "last")]
    assert execution.text == "last"
    assert execution.logs.stdout == ["one\n", "three\n"]
    assert execution.logs.stderr == ["two\n"]
    assert [r.is_main_result for r in execution.results] == [False, True]


def test_stdout_message_carries_the_kernel_timestamp(sbx: Sandbox) -> None:
    lines = []
    sbx.run_code("print(1)", on_stdout=lines.append)
    assert [m.line for m in lines] == ["1\n"]
    assert lines[0].error is False and lines[0].timestamp.endswith("+00:00")


def test_error_has_name_value_and_colourless_traceback(sbx: Sandbox) -> None:
    errors = []
    execution = sbx.run_code("undefined_name_xyz", on_error=errors.append)
    assert execution.error is not None
    assert (execution.error.name, execution.error.value) == ("NameError", "name 'undefined_name_xyz' is not defined")
    assert "undefined_name_xyz" in execution.error.traceback and "\x1b" not in execution.error.traceback
    assert len(errors) == 1  # IOPub and execute_reply report it once between them (§1.4)


def test_execution_count_counts_user_cells_only(sbx: Sandbox) -> None:
    fresh = sbx.create_code_context()
    try:
        first = sbx.run_code("1 +", context=fresh)
        assert first.error is not None and first.error.name == "SyntaxError"
        assert first.execution_count == 1
        # per-execution env vars are set/restored by silent cells, which must not count (§10.4)
        second = sbx.run_code("2", context=fresh, envs={"A_VAR": "1"})
        assert second.execution_count == 2
        assert sbx.run_code("3", context=fresh).execution_count == 3
    finally:
        sbx.remove_code_context(fresh)


# -- results --------------------------------------------------------------------------------------------


def test_each_result_format(sbx: Sandbox) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    code = f"""
from IPython.display import display, HTML, Markdown, SVG, Image, Latex, JSON, Javascript
display(HTML('<b>bold</b>'))
display(Markdown('# Title'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'))
display(Image(data=__import__('base64').b64decode('{PNG_1x1}'), format='png'))
display({{'image/jpeg': '/9j/AAAA', 'text/plain': 'jpeg'}}, raw=True)
display({{'application/pdf': '{pdf}', 'text/plain': 'pdf'}}, raw=True)
display(Latex(r'$\\alpha$'))
display(JSON({{'k': [1, 2]}}))
display(Javascript('console.log(1)'))
display({{'application/vnd.custom+json': {{'a': 1}}, 'text/plain': 'custom'}}, raw=True)
"""
    execution = sbx.run_code(code)
    assert execution.error is None, execution.error
    by_format = {fmt: r for r in execution.results for fmt in r.formats() if fmt != "text"}
    assert by_format["html"].html == "<b>bold</b>"
    assert by_format["markdown"].markdown == "# Title"
    assert "<svg" in by_format["svg"].svg
    assert by_format["png"].png == PNG_1x1
    assert by_format["jpeg"].jpeg == "/9j/AAAA"
    assert by_format["pdf"].pdf == pdf
    assert by_format["latex"].latex == "$\\alpha$"
    assert by_format["json"].json == {"k": [1, 2]}
    assert by_format["javascript"].javascript == "console.log(1)"
    assert by_format["application/vnd.custom+json"].extra == {"application/vnd.custom+json": {"a": 1}}
    assert all(not r.is_main_result for r in execution.results)


def test_latex_only_display_has_only_that_format(sbx: Sandbox) -> None:
    execution = sbx.run_code("display({'text/latex': r'\\frac{1}{2}'}, raw=True)")
    assert execution.results[0].formats() == ["latex"]


def test_dict_and_list_results_carry_json(sbx: Sandbox) -> None:
    assert sbx.run_code("{'a': 1, 2: [1.5, None]}").results[0].json == {"a": 1, "2": [1.5, None]}
    assert sbx.run_code("[1, 'two']").results[0].json == [1, "two"]


@pytest.mark.slow
def test_matplotlib_figure_is_a_png_result(sbx: Sandbox) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\n'after'"
    execution = sbx.run_code(code)
    assert execution.error is None, execution.error
    assert len(execution.results) == 2
    figure = execution.results[0]
    assert figure.png and figure.text.startswith("<Figure size") and figure.extra == {}
    assert base64.b64decode(figure.png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert execution.results[1].text == "after"


@pytest.mark.slow
def test_dataframe_result_has_data(sbx: Sandbox) -> None:
    execution = sbx.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})")
    result = execution.results[0]
    assert result.is_main_result and result.html and "<table" in result.html
    assert result.data["a"] == [1, 2, 3] and result.data["b"] == ["x", "y", "z"]


@pytest.mark.slow
def test_pillow_show_save_and_value_are_png_results(sbx: Sandbox, tmp_path: Path) -> None:
    setup = "from PIL import Image\nimage = Image.new('RGB', (4, 4), 'red')\n"
    shown = sbx.run_code(setup + "image.show()\nprint('done')")
    assert shown.results and shown.results[0].png and shown.logs.stdout == ["done\n"]
    assert sbx.run_code("image").results[0].png
    target = tmp_path / "test.png"
    saved = sbx.run_code(f"image.save({str(target)!r})")
    assert saved.results and saved.results[0].png and target.exists()


# -- contexts -------------------------------------------------------------------------------------------


def test_created_context_is_listed_last_with_its_cwd(sbx: Sandbox, tmp_path: Path) -> None:
    created = sbx.create_code_context(language="python", cwd=str(tmp_path))
    try:
        listed = sbx.list_code_contexts()
        assert (listed[-1].id, listed[-1].language, listed[-1].cwd) == (created.id, "python", str(tmp_path))
        assert listed[0].language == "python" and listed[0].cwd == "/home/user"  # the default comes first
        assert sbx.run_code("import os; os.getcwd()", context=created).text == str(tmp_path)
        # a new context does not see the default context's variables
        sbx.run_code("only_in_default = 1")
        assert sbx.run_code("only_in_default", context=created).error.name == "NameError"
    finally:
        sbx.remove_code_context(created)
    assert created.id not in [c.id for c in sbx.list_code_contexts()]


def test_restart_wipes_state_keeps_id_position_and_cwd(sbx: Sandbox, ctx, tmp_path: Path) -> None:
    sbx.run_code("kept = 1", context=ctx)
    before = [c.id for c in sbx.list_code_contexts()]
    sbx.restart_code_context(ctx)
    assert [c.id for c in sbx.list_code_contexts()] == before
    execution = sbx.run_code("kept", context=ctx)
    assert (execution.error.name, execution.error.value) == ("NameError", "name 'kept' is not defined")
    assert execution.execution_count == 1  # the counter starts again


def test_unknown_context_is_not_found(sbx: Sandbox) -> None:
    with pytest.raises(NotFoundException, match="Context nope not found"):
        sbx.remove_code_context("nope")
    with pytest.raises(NotFoundException, match="Context nope not found"):
        sbx.restart_code_context("nope")
    from e2b_code_interpreter.models import Context

    with pytest.raises(NotFoundException, match="Context nope not found"):
        sbx.run_code("1", context=Context(context_id="nope", language="python", cwd="/"))


def test_context_and_language_together_are_refused(sbx: Sandbox, ctx) -> None:
    with pytest.raises(InvalidArgumentException):
        sbx.run_code("1", context=ctx, language="python")
    r = httpx.post(f"{CODE_URL}/execute", json={"code": "1", "context_id": ctx.id, "language": "python"})
    assert (r.status_code, r.text) == (400, "Only one of context_id or language can be provided")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


def test_unknown_language_fails_with_500(sbx: Sandbox) -> None:
    with pytest.raises(SandboxException, match="Failed to create context"):
        sbx.run_code("1", language="cobol")
    with pytest.raises(SandboxException, match="Failed to create context"):
        sbx.create_code_context(language="cobol")


def test_python_language_uses_the_default_context(sbx: Sandbox) -> None:
    sbx.run_code("via_default = 7")
    assert sbx.run_code("via_default", language="python").text == "7"


# -- environment variables ------------------------------------------------------------------------------


def test_per_execution_env_var_is_restored(sbx: Sandbox, ctx) -> None:
    code = "import os, subprocess; (os.getenv('FOO', 'default'), subprocess.run(['sh', '-c', 'echo $FOO'], capture_output=True, text=True).stdout)"
    assert sbx.run_code(code, context=ctx, envs={"FOO": "b'a\"r"}).text == "('b\\'a\"r', 'b\\'a\"r\\n')"
    assert sbx.run_code("import os; os.getenv('FOO', 'default')", context=ctx).text == "default"


def test_sandbox_env_vars_from_init_and_overrides(sbx: Sandbox, code_daemon: Daemon) -> None:
    r = httpx.post(f"{code_daemon.url}/init", json={"envVars": {"SBX_LEVEL": "sandbox"}})
    assert r.status_code == 204
    read = "import os; os.getenv('SBX_LEVEL', 'unset')"
    assert sbx.run_code(read).text == "sandbox"
    assert sbx.run_code(read, envs={"SBX_LEVEL": "exec"}).text == "exec"
    assert sbx.run_code(read).text == "sandbox"
    fresh = sbx.create_code_context()
    try:
        assert sbx.run_code(read, context=fresh).text == "sandbox"
    finally:
        sbx.remove_code_context(fresh)


# -- failures -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_timeout_interrupts_and_the_context_stays_usable(sbx: Sandbox, ctx) -> None:
    sbx.run_code("survivor = 41", context=ctx)
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.run_code("import time; time.sleep(300)", context=ctx, timeout=3)
    assert time.monotonic() - started < 10
    execution = sbx.run_code("survivor + 1", context=ctx, timeout=15)
    assert execution.text == "42"  # interrupted, not restarted: state kept
    assert time.monotonic() - started < 20


@pytest.mark.slow
def test_kernel_that_dies_gives_an_error_and_the_context_recovers(sbx: Sandbox) -> None:
    doomed = sbx.create_code_context()
    try:
        execution = sbx.run_code("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", context=doomed, timeout=30)
        assert execution.error is not None
        assert (execution.error.name, execution.error.value) == ("ContextRestarting", "Context was restarted")
        assert sbx.run_code("1 + 1", context=doomed, timeout=30).text == "2"
        sbx.restart_code_context(doomed)
        assert sbx.run_code("2 + 2", context=doomed, timeout=30).text == "4"
    finally:
        sbx.remove_code_context(doomed)


@pytest.mark.slow
def test_twenty_concurrent_executions_across_contexts(sbx: Sandbox, ctx) -> None:
    other = sbx.create_code_context()
    contexts = [None, ctx, other]
    results: dict[int, object] = {}

    def run(i: int) -> None:
        context = contexts[i % 3]
        code = f"import time; time.sleep(0.05); print({i}); {i} * 2"
        try:
            results[i] = sbx.run_code(code, context=context, timeout=60)
        except Exception as err:  # collected and asserted below
            results[i] = err

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        for i in range(20):
            execution = results[i]
            assert not isinstance(execution, Exception), execution
            # the kernel may flush `print` in pieces ('18', '\n'), so compare the joined text
            assert execution.text == str(i * 2) and "".join(execution.logs.stdout) == f"{i}\n"
    finally:
        sbx.remove_code_context(other)


# -- async SDK ------------------------------------------------------------------------------------------


def test_async_sdk_with_async_callbacks(code_daemon: Daemon) -> None:
    async def main() -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("E2B_DEBUG", "true")
            mp.delenv("E2B_SANDBOX_URL", raising=False)
            sandbox = await AsyncSandbox.create()
        lines: list[str] = []

        async def on_stdout(message) -> None:
            await asyncio.sleep(0)
            lines.append(message.line)

        context = await sandbox.create_code_context()
        try:
            execution = await sandbox.run_code("print('async'); 5", context=context, on_stdout=on_stdout)
            assert execution.text == "5" and lines == ["async\n"]
        finally:
            await sandbox.remove_code_context(context)

    asyncio.run(main())


# -- the wire, below the SDK (§1) ----------------------------------------------------------------------


def test_wire_health_routes_and_cors(code_daemon: Daemon) -> None:
    health = httpx.get(f"{CODE_URL}/health")
    assert (health.status_code, health.content, health.headers["content-type"]) == (200, b'"OK"', "application/json")
    missing = httpx.get(f"{CODE_URL}/nope")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    wrong = httpx.put(f"{CODE_URL}/execute")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})
    preflight = httpx.options(f"{CODE_URL}/execute", headers={
        "Origin": "http://x.test", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    assert preflight.headers["access-control-max-age"] == "600"
    simple = httpx.get(f"{CODE_URL}/contexts", headers={"Origin": "http://x.test"})
    assert simple.headers["access-control-allow-origin"] == "*"


def test_wire_validation_is_fastapi_shaped(code_daemon: Daemon) -> None:
    r = httpx.post(f"{CODE_URL}/execute", json={"code": "1", "env_vars": {"N": 1}})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"type": "string_type", "loc": ["body", "env_vars", "N"],
                                   "msg": "Input should be a valid string", "input": 1}]
    r = httpx.post(f"{CODE_URL}/execute", json={"language": "python"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "code"]
    r = httpx.post(f"{CODE_URL}/execute", content=b"{not json")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = httpx.post(f"{CODE_URL}/contexts", json={"cwd": 5})
    assert r.status_code == 422


def test_wire_stream_is_ascii_ndjson_ending_once(code_daemon: Daemon) -> None:
    # JS-style body: unused keys omitted; bodiless DELETE/restart with a JSON content type work (§10.8).
    with httpx.stream("POST", f"{CODE_URL}/execute", json={"code": "print('\u2028é')\n'ok'"}) as r:
        assert r.status_code == 200 and "content-type" not in r.headers
        raw = r.read()
    assert raw.isascii()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and all(lines[:-1])
    events = [json.loads(line) for line in lines[:-1]]
    assert events[0]["type"] == "number_of_executions"
    assert events[1] == {"type": "stdout", "text": "\u2028é\n", "timestamp": events[1]["timestamp"]}
    assert events[-1] == {"type": "end_of_execution"}
    assert [e["type"] for e in events].count("end_of_execution") == 1
    created = httpx.post(f"{CODE_URL}/contexts", json={}).json()
    headers = {"Content-Type": "application/json"}
    restart = httpx.post(f"{CODE_URL}/contexts/{created['id']}/restart", headers=headers)
    assert (restart.status_code, restart.content) == (200, b"null")
    removed = httpx.delete(f"{CODE_URL}/contexts/{created['id']}", headers=headers)
    assert (removed.status_code, removed.content) == (200, b"null")
    gone = httpx.delete(f"{CODE_URL}/contexts/{created['id']}")
    assert (gone.status_code, gone.text) == (404, f"Context {created['id']} not found")


@pytest.mark.slow
def test_wire_keepalive_after_five_silent_seconds(code_daemon: Daemon) -> None:
    with httpx.stream("POST", f"{CODE_URL}/execute", json={"code": "import time; time.sleep(5.6); 'woke'"}, timeout=30) as r:
        events = [json.loads(line) for line in r.iter_lines()]
    types = [e["type"] for e in events]
    assert types == ["number_of_executions", "keepalive", "result", "end_of_execution"]


# -- charts (§3; extraction by the e2b-charts package inside the kernel) -----------------------------------


@pytest.mark.slow
def test_charts_of_each_kind(sbx: Sandbox) -> None:
    from e2b_code_interpreter.charts import (
        BarChart, BoxAndWhiskerChart, ChartType, LineChart, PieChart, ScatterChart, SuperChart)

    def chart_of(code: str):
        execution = sbx.run_code("import matplotlib.pyplot as plt\nimport numpy as np\n" + code)
        assert execution.error is None, execution.error
        assert execution.results and execution.results[0].png
        return execution, execution.results[0].chart

    _, bar = chart_of(
        "fig, ax = plt.subplots()\nax.bar(['A', 'B', 'C', 'D'], [100, 200, 300, 400], label='Sales')\n"
        "ax.set_title('Bars'); ax.set_xlabel('Product'); ax.set_ylabel('Sales (USD)'); ax.legend()\nplt.show()")
    assert isinstance(bar, BarChart) and bar.title == "Bars" and (bar.x_label, bar.y_unit) == ("Product", "USD")
    assert [(e.label, e.value, e.group) for e in bar.elements] == [
        ("A", 100, "Sales"), ("B", 200, "Sales"), ("C", 300, "Sales"), ("D", 400, "Sales")]

    execution, line = chart_of(
        "x = np.linspace(0, 10, 100)\nplt.plot(x, np.sin(x), label='sin')\nplt.plot(x, np.cos(x))\n"
        "plt.title('Waves'); plt.xlabel('Time (s)'); plt.ylabel('Amplitude (Hz)')\nplt.show()")
    assert isinstance(line, LineChart) and (line.x_unit, line.y_unit) == ("s", "Hz")
    assert [e.label for e in line.elements] == ["sin", "Line 1"] and len(line.elements[0].points) == 100
    assert line.x_scale == "linear" and all(isinstance(t, float) for t in line.x_ticks)
    assert '"type": "line"' in execution.to_json()

    _, pie = chart_of("plt.pie([90, 10], labels=['big', 'small'])\nplt.title('Pie')\nplt.show()")
    assert isinstance(pie, PieChart) and [(e.label, e.angle) for e in pie.elements] == [("big", 324), ("small", 36)]

    _, scatter = chart_of(
        "plt.scatter([1, 2, 3, 4, 5], [1, 4, 9, 16, 25], label='A')\nplt.scatter(range(10), range(10), label='B')\n"
        "plt.xlabel('x'); plt.ylabel('y')\nplt.show()")
    assert isinstance(scatter, ScatterChart) and scatter.title is None
    assert [len(e.points) for e in scatter.elements] == [5, 10]

    _, box = chart_of(
        "plt.boxplot([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 30]], tick_labels=['a', 'b'], patch_artist=True)\nplt.show()")
    assert isinstance(box, BoxAndWhiskerChart) and [e.label for e in box.elements] == ["a", "b"]
    assert box.elements[1].outliers == [30]

    _, log = chart_of("plt.plot(range(1, 101), [10 ** (i / 20) for i in range(100)])\n"
                      "plt.yscale('log'); plt.ylabel('Y-axis (log scale)')\nplt.show()")
    assert log.y_scale == "log" and log.y_unit == "log scale"

    _, superchart = chart_of(
        "fig, (a, b) = plt.subplots(2)\nfig.suptitle('Both')\na.plot([1, 2], [3, 4])\nb.scatter([1], [2])\nplt.show()")
    assert isinstance(superchart, SuperChart) and superchart.title == "Both"
    assert [c.type for c in superchart.elements] == [ChartType.LINE, ChartType.SCATTER]

    _, unknown = chart_of(
        "fig, ax = plt.subplots()\nax.add_patch(plt.Circle((0.5, 0.5), 0.2))\nax.add_patch(plt.Circle((0.2, 0.2), 0.1))\n"
        "ax.set_title('Circles')\nplt.show()")
    assert (unknown.type, unknown.title, unknown.elements) == (ChartType.UNKNOWN, "Circles", [])

    blank = sbx.run_code("plt.figure()\nplt.show()")
    assert all(r.chart is None for r in blank.results)



# -- contexts changing under a running execution (§4.9), and the default context removed (Q3) -------------


def test_removing_a_context_ends_its_running_execution(sbx: Sandbox) -> None:
    doomed = sbx.create_code_context()
    events: list[dict] = []

    def stream() -> None:
        body = {"code": "print('started', flush=True)\nimport time; time.sleep(60)", "context_id": doomed.id}
        with httpx.stream("POST", f"{CODE_URL}/execute", json=body, timeout=30) as r:
            for line in r.iter_lines():
                events.append(json.loads(line))

    reader = threading.Thread(target=stream)
    reader.start()
    deadline = time.monotonic() + 10
    while not any(e["type"] == "stdout" for e in events) and time.monotonic() < deadline:
        time.sleep(0.02)
    sbx.remove_code_context(doomed)
    reader.join(10)
    assert not reader.is_alive()
    assert events[-2:] == [
        {"type": "error", "name": "UnexpectedEndOfExecution",
         "value": "Connection to the execution was closed before the execution was finished", "traceback": ""},
        {"type": "end_of_execution"},
    ]


def test_removed_default_context_is_recreated_on_next_use(sbx: Sandbox) -> None:
    default = sbx.list_code_contexts()[0]
    sbx.run_code("before_removal = 1")
    sbx.remove_code_context(default)
    assert default.id not in [c.id for c in sbx.list_code_contexts()]
    execution = sbx.run_code("before_removal")  # no context, no language: the default python context
    assert execution.error is not None and execution.error.name == "NameError"
    recreated = sbx.list_code_contexts()[-1]
    assert (recreated.language, recreated.cwd) == ("python", "/home/user") and recreated.id != default.id
    assert sbx.run_code("'same'", language="python").text == "same"
    assert len([c for c in sbx.list_code_contexts() if c.id == recreated.id]) == 1
    assert httpx.get(f"{CODE_URL}/health").status_code == 200
