// importops' realtime API (Meteor DDP at /websocket) driven by a real DDP client library from
// npm: simpleddp 2.2.4 with simpleddp-plugin-login 4.0.2 over the `ws` WebSocket. Logins by
// password digest and by resume token, the import methods, and the `stream-importers`
// subscription seeing an operation written through the REST API.
//
// Environment (set by ./run): IMPORTOPS_BASE_URL, IMPORTOPS_ADMIN_USER / _PASSWORD (role admin),
// IMPORTOPS_VIEWER_USER / _PASSWORD (role user), CLIENTS_RESULTS (the results file). Runs last:
// it adds an operation to the database.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

import { assert, check, describe, equal, tally } from './harness.mjs';

const require = createRequire(import.meta.url);
const simpleddpModule = require('simpleddp');
const SimpleDDP = simpleddpModule.default ?? simpleddpModule;
const { simpleDDPLogin } = require('simpleddp-plugin-login');
const WebSocket = require('ws');

const base = process.env.IMPORTOPS_BASE_URL;
const endpoint = `${base.replace(/^http/, 'ws')}/websocket`;
const admin = { username: process.env.IMPORTOPS_ADMIN_USER, password: process.env.IMPORTOPS_ADMIN_PASSWORD };
const viewer = { username: process.env.IMPORTOPS_VIEWER_USER, password: process.env.IMPORTOPS_VIEWER_PASSWORD };
const DAY_MS = 24 * 3600 * 1000;

const sha256 = (text) => createHash('sha256').update(text).digest('hex');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const clients = [];
async function connected() {
  const server = new SimpleDDP(
    { endpoint, SocketConstructor: WebSocket, reconnectInterval: 1000, autoReconnect: false, maxTimeout: 10_000 },
    [simpleDDPLogin],
  );
  clients.push(server);
  await server.connect();
  return server;
}

async function passwordLogin(server, user) {
  return server.login({ user: { username: user.username }, password: { digest: sha256(user.password), algorithm: 'sha-256' } });
}

/** What a rejected method call carried (simpleddp rejects with the Meteor error). */
async function refusal(promise) {
  try {
    const value = await promise;
    throw new Error(`expected a Meteor error, got ${describe(value)}`);
  } catch (err) {
    if (err instanceof Error && !('errorType' in err) && !('error' in err)) throw err;
    return err;
  }
}

let adminToken = null;
let adminId = null;

await check('simpleddp: connects to /websocket (DDP 1)', async () => {
  const server = await connected();
  assert(server.connected === true, 'connected');
});

await check('simpleddp-plugin-login: a password login by SHA-256 digest answers type password and a token for 90 days', async () => {
  const server = await connected();
  const before = Date.now();
  const m = await passwordLogin(server, admin);
  equal(m.type, 'password', 'type');
  assert(typeof m.id === 'string' && m.id.length > 0, `id ${describe(m.id)}`);
  assert(typeof m.token === 'string' && m.token.length > 0, `token ${describe(m.token)}`);
  assert(m.tokenExpires instanceof Date, `tokenExpires is an EJSON date, got ${describe(m.tokenExpires)}`);
  const days = (m.tokenExpires.getTime() - before) / DAY_MS;
  assert(days > 89.9 && days < 90.1, `tokenExpires in ${days} days`);
  assert(server.userId === m.id, 'the plugin knows the user');
  adminToken = m.token;
  adminId = m.id;
});

await check('simpleddp-plugin-login: a resume login with that token answers type resume, the same user and token', async () => {
  assert(adminToken, 'the password login gave a token');
  const server = await connected();
  const m = await server.login({ resume: adminToken });
  equal([m.type, m.id, m.token], ['resume', adminId, adminToken], '[type, id, token]');
  assert(m.tokenExpires instanceof Date, 'tokenExpires is a Date');
});

await check('simpleddp-plugin-login: a wrong password and an unknown token are refused with 403', async () => {
  const server = await connected();
  const wrong = await refusal(server.login({ user: { username: admin.username }, password: { digest: sha256('wrong'), algorithm: 'sha-256' } }));
  equal([wrong.error, wrong.reason], [403, 'Something went wrong. Please check your credentials.'], '[error, reason]');
  const unknown = await refusal(server.login({ resume: 'not-a-token' }));
  equal([unknown.error, unknown.reason], [403, "You've been logged out by the server. Please log in again."], '[error, reason]');
});

await check('simpleddp: getLatestImportOperations as the admin: the REST array, _updatedAt as Dates', async () => {
  const server = await connected();
  await server.login({ resume: adminToken });
  const ops = await server.call('getLatestImportOperations');
  const rest = await (await fetch(`${base}/api/v1/getLatestImportOperations`, {
    headers: { 'X-User-Id': adminId, 'X-Auth-Token': adminToken },
  })).json();
  assert(Array.isArray(ops) && ops.length > 0 && ops.length <= 20, `1 to 20 operations, got ${describe(ops)}`);
  equal(ops.map((op) => op._id), rest.map((op) => op._id), 'the same operations in the same order');
  ops.forEach((op, i) => {
    assert(op._updatedAt instanceof Date, `_updatedAt of ${op._id} is ${describe(op._updatedAt)}`);
    equal(op._updatedAt.toISOString(), rest[i]._updatedAt, `_updatedAt of ${op._id}`);
    equal(op.status, rest[i].status, `status of ${op._id}`);
  });
});

await check('simpleddp: the import methods refuse the viewer and an anonymous connection as Rocket.Chat does', async () => {
  const anonymous = await connected();
  const noUser = await refusal(anonymous.call('getImportProgress'));
  equal([noUser.error, noUser.reason, noUser.details], ['error-invalid-user', 'Invalid user', 'getImportProgress'], 'anonymous');
  const server = await connected();
  await passwordLogin(server, viewer);
  const refused = await refusal(server.call('getImportProgress'));
  equal([refused.error, refused.reason, refused.details], ['error-action-not-allowed', 'Importing is not allowed', 'setupImporter'], 'viewer');
  const latest = await refusal(server.call('getLatestImportOperations'));
  equal([latest.error, latest.details], ['not_authorized', 'getLatestImportOperations'], 'viewer, latest');
});

await check('simpleddp: the stream-importers subscription sees an operation written through REST, within 1 s', async () => {
  const server = await connected();
  const events = [];
  server.on('changed', (m) => {
    if (m.collection === 'stream-importers') events.push({ at: Date.now(), m });
  });
  const sub = server.subscribe('stream-importers', 'progress', { useCollection: false, args: [] });
  await sub.ready();
  const login = await (await fetch(`${base}/api/v1/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: admin.username, password: admin.password }),
  })).json();
  const written = Date.now();
  const answer = await fetch(`${base}/api/v1/import.operations.upsert`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-User-Id': login.data.userId,
      'X-Auth-Token': login.data.authToken,
    },
    body: JSON.stringify({ type: 'CSV', importerKey: 'csv', status: 'importer_importing_users', count: { total: 5, completed: 2 } }),
  });
  equal(answer.status, 200, 'the upsert');
  for (let i = 0; i < 30 && events.length === 0; i += 1) await sleep(100);
  assert(events.length > 0, 'a progress event came');
  const { at, m } = events[0];
  assert(at - written < 1000, `${at - written} ms after the write`);
  equal(m.fields.eventName, 'progress', 'eventName');
  equal(m.fields.args, [{ key: 'csv', name: 'CSV', step: 'importer_importing_users', count: { completed: 2, total: 5, error: 0 } }], 'args');
});

for (const server of clients) {
  try { await server.disconnect(); } catch { /* already closed */ }
}
console.log(`ddp checks: ${tally.passed} passed, ${tally.failed} failed`);
process.exitCode = tally.failed > 0 ? 1 : 0;
