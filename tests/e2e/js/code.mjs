// Drives envd's code-interpreter API through the unmodified JS SDK @e2b/code-interpreter in debug mode and
// prints one JSON object with what came back. Run by tests/e2e/test_js_sdk_code.py, which asserts on it.
// Env: E2B_DEBUG=true, E2B_SANDBOX_URL=<envd code-port url>, CWD_DIR=<an existing directory>,
// JS_KERNEL=1 when a javascript kernel is installed.
import { Sandbox } from '@e2b/code-interpreter'
import { out, step } from './report.mjs'

const errorInfo = (err) => ({ name: err?.name, message: err?.message })
const PNG_1x1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='

const sbx = await Sandbox.create()
// One scratch context for the steps that need a context of their own (a kernel start costs seconds);
// executionCount runs first, while it is fresh.
const scratch = await sbx.createCodeContext()

await step('state', async () => {
  await sbx.runCode('js_state = 1')
  const r = await sbx.runCode('js_state += 1; js_state')
  return { text: r.text, error: r.error ?? null }
})

await step('streaming', async () => {
  const events = []
  const code = [
    'import sys',
    "print('one', flush=True)",
    "print('two', file=sys.stderr, flush=True)",
    "display('shown')",
    "print('three', flush=True)",
    "'last'",
  ].join('\n')
  const r = await sbx.runCode(code, {
    onStdout: (m) => events.push(['stdout', m.line, m.error]),
    onStderr: (m) => events.push(['stderr', m.line, m.error]),
    onResult: (res) => events.push(['result', res.text, res.isMainResult]),
    onError: (e) => events.push(['error', e.name]),
  })
  return { events, text: r.text, stdout: r.logs.stdout, stderr: r.logs.stderr }
})

await step('formats', async () => {
  const code = `
import base64
from IPython.display import display, HTML, Markdown, SVG, Image, Latex, JSON, Javascript
display(HTML('<b>bold</b>'))
display(Markdown('# Title'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'))
display(Image(data=base64.b64decode('${PNG_1x1}'), format='png'))
display({'image/jpeg': '/9j/AAAA', 'text/plain': 'jpeg'}, raw=True)
display({'application/pdf': 'JVBERi0=', 'text/plain': 'pdf'}, raw=True)
display(Latex(r'$\\alpha$'))
display(JSON({'k': [1, 2]}))
display(Javascript('console.log(1)'))
display({'application/vnd.custom+json': {'a': 1}, 'text/plain': 'custom'}, raw=True)
{'a': 1, 'b': [1.5, None]}
`
  const r = await sbx.runCode(code)
  return {
    error: r.error ?? null,
    results: r.results.map((res) => ({
      formats: res.formats(),
      isMainResult: res.isMainResult,
      text: res.text,
      html: res.html,
      markdown: res.markdown,
      svg: res.svg,
      png: res.png,
      jpeg: res.jpeg,
      pdf: res.pdf,
      latex: res.latex,
      json: res.json,
      javascript: res.javascript,
      extra: res.extra,
      rawExtra: res.raw.extra,
    })),
  }
})

await step('error', async () => {
  const seen = []
  const r = await sbx.runCode("print('before', flush=True)\nundefined_name_xyz", {
    onStdout: (m) => seen.push(['stdout', m.line]),
    onError: (e) => seen.push(['error', e.name]),
  })
  return { name: r.error?.name, value: r.error?.value, traceback: r.error?.traceback, seen, stdout: r.logs.stdout,
    results: r.results.length }
})

await step('executionCount', async () => {
  const counts = []
  counts.push((await sbx.runCode('1 +', { context: scratch })).executionCount)
  // per-execution env vars are set and restored by silent cells, which must not count (§10.4)
  counts.push((await sbx.runCode('2', { context: scratch, envs: { A_VAR: '1' } })).executionCount)
  counts.push((await sbx.runCode('3', { context: scratch })).executionCount)
  return counts
})

await step('contexts', async () => {
  const created = await sbx.createCodeContext({ language: 'python', cwd: process.env.CWD_DIR })
  const listed = await sbx.listCodeContexts()
  const cwd = (await sbx.runCode('import os; os.getcwd()', { context: created })).text
  await sbx.runCode('only_here = 5', { context: created })
  const before = (await sbx.runCode('only_here', { context: created })).text
  const inDefault = (await sbx.runCode('only_here')).error?.name
  await sbx.restartCodeContext(created)
  const afterRestart = await sbx.runCode('only_here', { context: created })
  const listedAfterRestart = (await sbx.listCodeContexts()).map((c) => c.id)
  const cwdAfterRestart = (await sbx.runCode('import os; os.getcwd()', { context: created })).text
  await sbx.removeCodeContext(created.id) // by id string
  const afterRemove = (await sbx.listCodeContexts()).map((c) => c.id)
  return {
    created,
    listed,
    cwd,
    before,
    inDefault,
    afterRestart: { error: afterRestart.error?.name, count: afterRestart.executionCount },
    listedIdsBefore: listed.map((c) => c.id),
    listedAfterRestart,
    cwdAfterRestart,
    afterRemove,
  }
})

await step('envs', async () => {
  const read = "import os; os.getenv('JS_FOO', 'default')"
  const code = "import os, subprocess; (os.getenv('JS_FOO', 'default'), subprocess.run(['sh', '-c', 'echo $JS_FOO'], capture_output=True, text=True).stdout)"
  return {
    during: (await sbx.runCode(code, { context: scratch, envs: { JS_FOO: `b'a"r` } })).text,
    after: (await sbx.runCode(read, { context: scratch })).text,
    otherContext: (await sbx.runCode(read, { envs: { JS_FOO: 'x' } })).text,
    otherAfter: (await sbx.runCode(read)).text,
  }
})

await step('timeout', async () => {
  await sbx.runCode('survivor = 41', { context: scratch })
  const started = Date.now()
  let error = null
  try {
    await sbx.runCode('import time; time.sleep(300)', { context: scratch, timeoutMs: 3000 })
  } catch (err) {
    error = errorInfo(err)
  }
  const timedOutMs = Date.now() - started
  const next = await sbx.runCode('survivor + 1', { context: scratch, timeoutMs: 30000 })
  return { error, timedOutMs, next: next.text, nextError: next.error ?? null, totalMs: Date.now() - started }
})

await step('unknownContext', async () => {
  const attempt = async (fn) => {
    try {
      await fn()
      return 'no error'
    } catch (err) {
      return errorInfo(err)
    }
  }
  const nope = { id: 'nope', language: 'python', cwd: '/' }
  return {
    run: await attempt(() => sbx.runCode('1', { context: nope })),
    remove: await attempt(() => sbx.removeCodeContext('nope')),
    restart: await attempt(() => sbx.restartCodeContext(nope)),
    both: await attempt(() => sbx.runCode('1', { context: nope, language: 'python' })),
    language: await attempt(() => sbx.runCode('1', { language: 'cobol' })),
  }
})

if (process.env.JS_KERNEL === '1') {
  await step('javascript', async () => {
    const ctx = await sbx.createCodeContext({ language: 'js' })
    try {
      await sbx.runCode('const jsValue = 20', { context: ctx })
      const r = await sbx.runCode('console.log("from js"); jsValue + 22', { context: ctx })
      return { language: ctx.language, text: r.text, stdout: r.logs.stdout, error: r.error ?? null }
    } finally {
      await sbx.removeCodeContext(ctx)
    }
  })
}

await sbx.removeCodeContext(scratch)
console.log(JSON.stringify(out))
// runCode leaves its 60 s request timer armed when the server answers with an error status (it throws
// before clearTimeout), which would keep node alive for a minute after the unknownContext step.
process.exit(0)
