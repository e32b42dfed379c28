// Drives envd's filesystem through the unmodified E2B JS SDK in debug mode and prints one JSON
// object with what came back. Run by tests/e2e/test_js_sdk.py, which asserts on it.
// Env: E2B_DEBUG=true, E2B_SANDBOX_URL=<envd url>, ENVD_TEST_DIR=<absolute scratch dir>,
//      ENVD_TEST_REL=<the same dir relative to the default user's home>.
import { Sandbox } from 'e2b'
import { out, step } from './report.mjs'

const dir = process.env.ENVD_TEST_DIR
const rel = process.env.ENVD_TEST_REL
if (!dir || !rel) throw new Error('ENVD_TEST_DIR and ENVD_TEST_REL are required')

const entry = (e) => ({
  name: e.name,
  type: e.type,
  path: e.path,
  size: e.size,
  mode: e.mode,
  permissions: e.permissions,
  owner: e.owner,
  group: e.group,
  modifiedTime: e.modifiedTime ? e.modifiedTime.toISOString() : null,
  symlinkTarget: e.symlinkTarget ?? null,
  metadata: e.metadata ?? null,
})


const sbx = await Sandbox.create()
out.sandboxId = sbx.sandboxId

await step('write', async () => await sbx.files.write(`${dir}/hello.txt`, 'hello from js'))
await step('readText', async () => await sbx.files.read(`${dir}/hello.txt`))
await step('readRelative', async () => await sbx.files.read(`${rel}/hello.txt`))
await step('readBytes', async () => Array.from(await sbx.files.read(`${dir}/hello.txt`, { format: 'bytes' })))
await step('readBlob', async () => await (await sbx.files.read(`${dir}/hello.txt`, { format: 'blob' })).text())
await step('readStream', async () => {
  const stream = await sbx.files.read(`${dir}/hello.txt`, { format: 'stream' })
  const chunks = []
  for await (const chunk of stream) chunks.push(Buffer.from(chunk))
  return Buffer.concat(chunks).toString()
})
await step('empty', async () => {
  await sbx.files.write(`${dir}/empty.txt`, '')
  return {
    text: await sbx.files.read(`${dir}/empty.txt`),
    bytes: (await sbx.files.read(`${dir}/empty.txt`, { format: 'bytes' })).length,
    gzipText: await sbx.files.read(`${dir}/empty.txt`, { gzip: true }),
  }
})
await step('writeMany', async () =>
  await sbx.files.write([
    { path: `${rel}/nested/a.txt`, data: 'A' },
    { path: `${dir}/nested/deeper/b.bin`, data: new Uint8Array([0, 1, 2, 255]) },
    { path: `${dir}/blob.txt`, data: new Blob(['from a blob']) },
  ]))
await step('octetGzipMetadata', async () => {
  const info = await sbx.files.write(`${dir}/gz.txt`, 'gzip '.repeat(1000), {
    gzip: true,
    metadata: { origin: 'js' },
  })
  const read = await sbx.files.read(`${dir}/gz.txt`, { gzip: true })
  return { info, readLength: read.length, readOk: read === 'gzip '.repeat(1000) }
})
await step('list1', async () => (await sbx.files.list(dir)).map(entry))
await step('list2', async () => (await sbx.files.list(rel, { depth: 2 })).map((e) => e.path))
await step('exists', async () => ({
  file: await sbx.files.exists(`${dir}/hello.txt`),
  missing: await sbx.files.exists(`${dir}/missing.txt`),
}))
await step('getInfo', async () => entry(await sbx.files.getInfo(`${dir}/gz.txt`)))
await step('makeDir', async () => [await sbx.files.makeDir(`${dir}/made/x`), await sbx.files.makeDir(`${dir}/made/x`)])
await step('rename', async () => entry(await sbx.files.rename(`${dir}/hello.txt`, `${dir}/made/hello2.txt`)))
await step('remove', async () => {
  await sbx.files.remove(`${dir}/made/hello2.txt`)
  await sbx.files.remove(`${dir}/never-existed`)
  return await sbx.files.exists(`${dir}/made/hello2.txt`)
})
await step('readMissing', async () => {
  try {
    await sbx.files.read(`${dir}/missing.txt`)
    return 'no error'
  } catch (err) {
    return err.name
  }
})

// An upload the server refuses must surface as an SDK error carrying envd's message, not as a
// transport failure (undici reports 'fetch failed' when the server closes before reading the body).
await step('writeOntoDir', async () => {
  try {
    await sbx.files.write(`${dir}/nested`, 'not a dir')
    return 'no error'
  } catch (err) {
    return `${err.name}: ${err.message}`
  }
})

await step('watch', async () => {
  const events = []
  let exitError = 'not called'
  let resolve
  const written = new Promise((r) => (resolve = r))
  const handle = await sbx.files.watchDir(
    dir,
    (ev) => {
      events.push({ name: ev.name, type: ev.type, entryPath: ev.entry?.path ?? null })
      if (ev.name === 'watched/w.txt' && ev.type === 'write') resolve()
    },
    { recursive: true, includeEntry: true, onExit: (err) => (exitError = err ? String(err) : null) },
  )
  await sbx.files.makeDir(`${dir}/watched`)
  // Give the recursive watch a moment to attach to the new directory (envd.md §7.7 step 10).
  await new Promise((r) => setTimeout(r, 300))
  await sbx.files.write(`${dir}/watched/w.txt`, 'watched')
  const timer = new Promise((_, reject) => setTimeout(() => reject(new Error('no write event within 10 s')), 10_000))
  try {
    await Promise.race([written, timer])
  } finally {
    await handle.stop()
  }
  // onExit fires asynchronously once the stream has closed.
  await new Promise((r) => setTimeout(r, 200))
  return { events, exitError }
})

await step('watchMissing', async () => {
  try {
    await sbx.files.watchDir(`${dir}/missing`, () => {})
    return 'no error'
  } catch (err) {
    return err.name
  }
})

await step('downloadUrl', async () => {
  // JS encodes the space in the query as '+': envd must decode the query form-style (§3.4).
  await sbx.files.write(`${dir}/dl file.txt`, 'url body')
  const url = await sbx.downloadUrl(`${dir}/dl file.txt`)
  const res = await fetch(url)
  return { url, status: res.status, body: await res.text() }
})

console.log(JSON.stringify(out))
process.exit(0)
