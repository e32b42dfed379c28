// Drives `envd platform` through the unmodified E2B JS SDK in normal mode (no E2B_DEBUG) and prints one JSON
// object with what came back. Run by tests/platform/test_platform_js.py, which asserts on it.
// Env: E2B_API_URL, E2B_API_KEY, E2B_SANDBOX_URL (the platform's API and routing proxy).
import { Sandbox } from 'e2b'
import { out, step } from './report.mjs'


const sbx = await Sandbox.create('base', { envs: { GREETING: 'hello from js' }, metadata: { via: 'js' }, timeoutMs: 120_000 })
out.sandboxId = sbx.sandboxId
await step('run', async () => {
  const r = await sbx.commands.run('echo "$GREETING"; id -un; pwd')
  return { stdout: r.stdout, exitCode: r.exitCode }
})
await step('runFails', async () => {
  try {
    await sbx.commands.run('echo oops >&2; exit 4')
    return null
  } catch (err) {
    return { exitCode: err.exitCode, stderr: err.stderr }
  }
})
await step('write', async () => (await sbx.files.write('js/hello.txt', 'written by js')).path)
await step('read', async () => await sbx.files.read('/home/user/js/hello.txt'))
await step('list', async () => (await sbx.files.list('/home/user/js')).map((e) => e.name))
await step('info', async () => {
  const info = await sbx.getInfo()
  return { templateId: info.templateId, state: info.state, metadata: info.metadata }
})
await step('runningBeforeKill', async () => await sbx.isRunning())
await step('kill', async () => await sbx.kill())
await step('runningAfterKill', async () => await sbx.isRunning())
await step('killAgain', async () => await Sandbox.kill(sbx.sandboxId))
console.log(JSON.stringify(out))
