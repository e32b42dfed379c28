// The JSON report every script here prints last (tests/e2e/js_project.py reads it): each step's value under
// its name; a step that throws is recorded under errors[name] rather than aborting the run, so the test
// reports every failure.
export const out = { errors: {} }

export async function step(name, fn) {
  try {
    out[name] = await fn()
  } catch (err) {
    out.errors[name] = `${err?.name}: ${err?.message}`
  }
}
