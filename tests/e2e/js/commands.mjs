// Drives envd's process service through the unmodified E2B JS SDK in debug mode and prints one JSON
// object with what came back. Run by tests/e2e/test_js_sdk_commands.py, which asserts on it.
// Env: E2B_DEBUG=true, E2B_SANDBOX_URL=<envd url>.
import { Sandbox } from 'e2b'
import { out, step } from './report.mjs'

const errorInfo = (err) => ({
  name: err?.name,
  exitCode: err?.exitCode,
  error: err?.error,
  stdout: err?.stdout,
  stderr: err?.stderr,
})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
async function waitGone(pid, ms = 5000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (!alive(pid)) return true
    await sleep(20)
  }
  return false
}

const sbx = await Sandbox.create()
out.sandboxId = sbx.sandboxId

await step('run', async () => {
  const r = await sbx.commands.run('echo hello; echo oops >&2')
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode, error: r.error ?? null }
})

await step('streaming', async () => {
  const events = []
  const r = await sbx.commands.run(
    'for i in 1 2 3; do echo out$i; sleep 0.1; echo err$i >&2; sleep 0.1; done',
    { onStdout: (d) => events.push(['out', d]), onStderr: (d) => events.push(['err', d]) },
  )
  return { events, stdout: r.stdout, stderr: r.stderr }
})

await step('envsCwdUser', async () => ({
  envs: (await sbx.commands.run('echo $FOO', { envs: { FOO: 'from-js' } })).stdout,
  cwd: (await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout,
  user: (await sbx.commands.run('id -un; echo $HOME')).stdout,
  root: (await sbx.commands.run('id -un; echo $HOME', { user: 'root' })).stdout,
}))

await step('exitError', async () => {
  try {
    await sbx.commands.run('echo out; echo err >&2; exit 3')
    return 'no error'
  } catch (err) {
    return errorInfo(err)
  }
})

await step('notFound', async () => {
  try {
    await sbx.commands.run('definitely-not-a-command-4711')
    return 'no error'
  } catch (err) {
    return errorInfo(err)
  }
})

await step('brokenUtf8', async () => {
  const chunks = []
  const r = await sbx.commands.run("printf 'a\\377\\376b'; sleep 0.2; printf '\\342\\202'; sleep 0.2; printf '\\254\\342\\202'", {
    onStdout: (d) => chunks.push(d),
  })
  return { stdout: r.stdout, chunks }
})

await step('timeout', async () => {
  let pid = null
  const begin = Date.now()
  try {
    await sbx.commands.run('echo $$; exec sleep 30', { timeoutMs: 1500, onStdout: (d) => { pid = Number(d.trim()) } })
    return 'no error'
  } catch (err) {
    return { name: err?.name, elapsedMs: Date.now() - begin, pid, gone: pid ? await waitGone(pid) : null }
  }
})

await step('backgroundKill', async () => {
  const handle = await sbx.commands.run('sleep 30', { background: true })
  const listed = (await sbx.commands.list()).find((p) => p.pid === handle.pid) ?? null
  const killed = await handle.kill()
  let waitError = null
  try {
    await handle.wait()
  } catch (err) {
    waitError = errorInfo(err)
  }
  const gone = await waitGone(handle.pid)
  const again = await sbx.commands.kill(handle.pid)
  return { pid: handle.pid, listed, killed, waitError, gone, again }
})

await step('stdin', async () => {
  const chunks = []
  const handle = await sbx.commands.run('cat', { background: true, stdin: true, onStdout: (d) => chunks.push(d) })
  await sbx.commands.sendStdin(handle.pid, 'hello from js\n')
  const deadline = Date.now() + 5000
  while (chunks.length === 0 && Date.now() < deadline) await sleep(10)
  await handle.sendStdin(new Uint8Array([0x61, 0x62]))
  await handle.closeStdin()
  const r = await handle.wait()
  return { chunks, stdout: r.stdout, exitCode: r.exitCode }
})

await step('stdinOff', async () => {
  const begin = Date.now()
  const r = await sbx.commands.run('cat; echo done', { timeoutMs: 10000 })
  return { stdout: r.stdout, elapsedMs: Date.now() - begin }
})

await step('connect', async () => {
  const handle = await sbx.commands.run('echo first; while read l; do echo got:$l; done', { background: true, stdin: true })
  const deadline = Date.now() + 5000
  while (!handle.stdout.includes('first') && Date.now() < deadline) await sleep(10)
  const other = await Sandbox.create()
  const seen = []
  const attached = await other.commands.connect(handle.pid, { onStdout: (d) => seen.push(d) })
  await sbx.commands.sendStdin(handle.pid, 'x\n')
  await other.commands.closeStdin(handle.pid)
  const r2 = await attached.wait()
  const r1 = await handle.wait()
  let missing = null
  try {
    await sbx.commands.connect(4000000)
  } catch (err) {
    missing = err?.name
  }
  return { first: r1.stdout, second: r2.stdout, seen, missing }
})

await step('pty', async () => {
  const decoder = new TextDecoder()
  let text = ''
  let consumed = 0
  const expect = async (re, ms = 10000) => {
    const deadline = Date.now() + ms
    while (Date.now() < deadline) {
      const m = re.exec(text.slice(consumed))
      if (m) {
        consumed += m.index + m[0].length
        return m
      }
      await sleep(10)
    }
    throw new Error(`${re} not seen in ${JSON.stringify(text.slice(consumed))}`)
  }
  const enc = new TextEncoder()
  const handle = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { text += decoder.decode(d, { stream: true }) } })
  await sbx.pty.sendInput(handle.pid, enc.encode('echo "S:$(stty size):$TERM:E"\n'))
  const before = (await expect(/S:(\d+ \d+):([^:]*):E/)).slice(1)
  await sbx.pty.resize(handle.pid, { cols: 100, rows: 30 })
  await sbx.pty.sendInput(handle.pid, enc.encode('echo "S:$(stty size):$(tput cols):E"\n'))
  const after = (await expect(/S:(\d+ \d+):(\d+):E/)).slice(1)
  const killed = await sbx.pty.kill(handle.pid)
  let waitError = null
  try {
    await handle.wait()
  } catch (err) {
    waitError = errorInfo(err)
  }
  const gone = await waitGone(handle.pid)
  const again = await sbx.pty.kill(handle.pid)
  return { before, after, killed, exitCode: waitError?.exitCode ?? null, gone, again }
})

await step('ptyExit', async () => {
  const handle = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} })
  await sbx.pty.sendInput(handle.pid, new TextEncoder().encode('exit\n'))
  const r = await handle.wait()
  return { exitCode: r.exitCode }
})

console.log(JSON.stringify(out))
