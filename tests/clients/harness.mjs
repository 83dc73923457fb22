// A small check runner shared by the Node checks: each check has a name, runs once, and its
// result (pass, or fail with a message) is printed and written to $CLIENTS_RESULTS as JSON
// lines, which the run script adds up with the Python checks' results.
import { appendFileSync } from 'node:fs';
import { isDeepStrictEqual, inspect } from 'node:util';

const results = process.env.CLIENTS_RESULTS;
export const tally = { passed: 0, failed: 0 };

export async function check(name, fn) {
  let outcome;
  try {
    await fn();
    outcome = { name, ok: true };
    console.log(`PASS  ${name}`);
  } catch (err) {
    const message = await explain(err);
    outcome = { name, ok: false, message };
    console.log(`FAIL  ${name}\n      ${message.replaceAll('\n', '\n      ')}`);
  }
  tally[outcome.ok ? 'passed' : 'failed'] += 1;
  if (results) appendFileSync(results, `${JSON.stringify({ suite: 'node', ...outcome })}\n`);
  return outcome.ok;
}

/** A failure's message; a rejected request as its status and body. */
async function explain(err) {
  if (err instanceof Error) return err.message;
  try {
    const r = await rejection(Promise.reject(err));
    return `the request was answered ${r.status} ${describe(r.body)}`;
  } catch {
    return describe(err);
  }
}

export function describe(value) {
  if (typeof value === 'string') return value;
  return inspect(value, { depth: 6, breakLength: 120 });
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export function equal(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${describe(expected)}, got ${describe(actual)}`);
  }
}

/** Paths of every `null` inside a JSON value (a typed client expects absent, not null). */
export function nullPaths(value, path = '$') {
  if (value === null) return [path];
  if (Array.isArray(value)) return value.flatMap((v, i) => nullPaths(v, `${path}[${i}]`));
  if (typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => nullPaths(v, `${path}.${k}`));
  }
  return [];
}

export function noNulls(value, what) {
  const paths = nullPaths(value);
  assert(paths.length === 0, `${what} has null where the type has no null: ${paths.join(', ')}`);
}

/** The status and JSON body of a rejected request, whichever library rejected it. */
export async function rejection(promise) {
  try {
    const value = await promise;
    return { resolved: true, value };
  } catch (err) {
    // @rocket.chat/api-client rejects with the fetch Response.
    if (err && typeof err === 'object' && typeof err.status === 'number' && typeof err.text === 'function') {
      const text = await err.text();
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
      return { resolved: false, status: err.status, body };
    }
    // @rocket.chat/sdk 1.0 rejects with { status, data }.
    if (err && typeof err === 'object' && typeof err.status === 'number' && 'data' in err) {
      return { resolved: false, status: err.status, body: err.data };
    }
    throw err;
  }
}

export async function expectRejection(promise, status, what) {
  const r = await rejection(promise);
  if (r.resolved) throw new Error(`${what}: expected ${status}, but the call succeeded with ${describe(r.value)}`);
  equal(r.status, status, `${what}: status (body ${describe(r.body)})`);
  return r.body;
}
