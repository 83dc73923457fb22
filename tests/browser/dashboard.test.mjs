// The dashboard (GET /) end to end in headless Chromium, against a real importops server.
// Run by `tests/browser/run`, which starts the server and sets the environment read below.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this test with tests/browser/run`);
  return value;
}

const BASE = env('IMPORTOPS_BASE_URL');
const ADMIN = { user: env('IMPORTOPS_ADMIN_USER'), password: env('IMPORTOPS_ADMIN_PASSWORD') };
const VIEWER = { user: env('IMPORTOPS_VIEWER_USER'), password: env('IMPORTOPS_VIEWER_PASSWORD') };
const LIMITED_BASE = env('IMPORTOPS_LIMITED_BASE_URL');
const WATCHER = { user: env('IMPORTOPS_WATCHER_USER'), password: env('IMPORTOPS_WATCHER_PASSWORD') };
const ADMIN_TOKEN = { userId: env('IMPORTOPS_ADMIN_USER_ID'), authToken: env('IMPORTOPS_ADMIN_TOKEN') };
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1' ? env('SCREENSHOT_PATH') : null;
const WAIT_MS = 15_000;

// Rocket.Chat's documented example, as the table must show it.
const DOCUMENTED = [
  ['Pending Avatars', 'pending-avatars', 'Ready to select users', 'waiting', 1635280600083, '2021-10-27T11:26:24.430Z'],
  ['Pending Files', 'pending-files', 'Import done', 'done', 1635280596592, '2021-10-27T08:32:42.609Z'],
  ['Pending Files', 'pending-files', 'Ready to select users', 'waiting', 1635277590992, '2021-10-27T08:32:42.609Z'],
  ['Pending Avatars', 'pending-avatars', 'Import done', 'done', 1635277492185, '2021-10-27T08:32:42.609Z'],
  ['Pending Avatars', 'pending-avatars', 'Import done', 'done', 1635277452755, '2021-10-27T08:32:42.609Z'],
  ['CSV', 'csv', 'File loaded', 'waiting', 1635247067385, '2021-10-27T08:32:42.609Z'],
  ['Pending Avatars', 'pending-avatars', 'Import done', 'done', 1635247489080, '2021-10-27T08:32:42.609Z'],
];

let userDataDir;
let context;

before(async () => {
  userDataDir = mkdtempSync(join(tmpdir(), 'importops-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1200, height: 700 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
});

after(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

// A fresh tab (and so a fresh sessionStorage) on the dashboard; script errors and CSP
// violations are collected and must stay empty.
async function openDashboard(t, base = BASE) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  t.after(async () => {
    await page.close();
    assert.deepEqual(problems, [], 'no script errors and no CSP violations');
  });
  const response = await page.goto(`${base}/`);
  assert.equal(response.status(), 200);
  const headers = response.headers();
  assert.equal(headers['content-type'], 'text/html; charset=utf-8');
  assert.match(headers['content-security-policy'], /default-src 'none'/);
  assert.equal(await page.title(), 'Import history · importops');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  return page;
}

async function message(page) {
  return (await page.locator('#message').textContent()).trim();
}

// Waits until the live message is `expected` (a string, or a RegExp), and says what it was if not.
async function waitForMessage(page, expected) {
  try {
    await page.waitForFunction(
      ([source, flags, exact]) => {
        const text = document.getElementById('message').textContent.trim();
        return exact !== null ? text === exact : new RegExp(source, flags).test(text);
      },
      expected instanceof RegExp ? [expected.source, expected.flags, null] : ['', '', expected],
      { timeout: WAIT_MS },
    );
  } catch (error) {
    throw new Error(`the message should be ${expected}, it is ${JSON.stringify(await message(page))}`);
  }
}

async function waitForRows(page, count) {
  try {
    await page.waitForFunction(
      (n) => {
        const card = document.getElementById('table-card');
        return !card.hidden && document.querySelectorAll('#rows tr').length === n;
      },
      count,
      { timeout: WAIT_MS },
    );
  } catch (error) {
    const rows = await page.locator('#rows tr').count();
    throw new Error(`expected ${count} rows, found ${rows}; message: ${JSON.stringify(await message(page))}`);
  }
}

async function table(page) {
  return page.$$eval('#rows tr', (rows) =>
    rows.map((row) =>
      [...row.cells].map((cell) => ({
        text: cell.textContent.trim(),
        badge: cell.querySelector('.badge')?.className ?? null,
        datetime: cell.querySelector('time')?.getAttribute('datetime') ?? null,
      })),
    ),
  );
}

async function signInWithPassword(page, { user, password }) {
  await page.getByLabel('Username or e-mail').fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

async function signInWithToken(page, { userId, authToken }) {
  await page.getByText('Sign in with a user id and a token').click();
  await page.getByLabel('User id').fill(userId);
  await page.getByLabel('Token').fill(authToken);
  await page.getByRole('button', { name: 'Sign in with token' }).click();
}

async function session(page) {
  return page.evaluate(() => ({
    userId: sessionStorage.getItem('importops.userId'),
    authToken: sessionStorage.getItem('importops.authToken'),
  }));
}

async function api(path, { method = 'GET', login, body } = {}) {
  const headers = {};
  if (login) Object.assign(headers, { 'X-User-Id': login.userId, 'X-Auth-Token': login.authToken });
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

function assertDocumentedExample(rows) {
  assert.equal(rows.length, DOCUMENTED.length);
  rows.forEach((cells, i) => {
    const [type, importer, status, colour, ts, updatedAt] = DOCUMENTED[i];
    const row = `row ${i + 1}`;
    assert.equal(cells.length, 7, row);
    assert.equal(cells[0].text, type, `${row}: type`);
    assert.equal(cells[1].text, importer, `${row}: importer`);
    assert.equal(cells[2].text, status, `${row}: status`);
    assert.equal(cells[2].badge, `badge ${colour}`, `${row}: badge colour`);
    assert.equal(cells[3].text, 'no', `${row}: valid`);
    assert.equal(cells[4].text, '—', `${row}: counts`);
    assert.equal(cells[5].datetime, new Date(ts).toISOString(), `${row}: started`);
    assert.match(cells[5].text, /^[A-Z][a-z]{2} \d{1,2}, 2021 \d{2}:\d{2}:\d{2}( [AP]M)? UTC$/, `${row}: started`);
    assert.equal(cells[6].datetime, updatedAt, `${row}: updated`);
  });
  // Readable local times with their zone (the browser runs in UTC here).
  assert.equal(rows[0][5].text, 'Oct 26, 2021 08:36:40 PM UTC');
  assert.equal(rows[0][6].text, 'Oct 27, 2021 11:26:24 AM UTC');
}

test('the admin signs in with a password and sees the documented example', async (t) => {
  const page = await openDashboard(t);
  await signInWithPassword(page, ADMIN);
  await waitForRows(page, 7);
  assertDocumentedExample(await table(page));

  assert.equal((await page.locator('#who').textContent()).trim(), ADMIN.user);
  assert.equal(await message(page), '');
  assert.equal(await page.locator('#signin').isHidden(), true);
  assert.match(await page.locator('caption').textContent(), /newest first/);
  const headers = await page.$$eval('thead th', (ths) => ths.map((th) => th.textContent.trim()));
  assert.deepEqual(headers, [
    'Type', 'Importer', 'Status', 'Valid', 'Counts (total / completed / error)', 'Started', 'Updated',
  ]);
  const stored = await session(page);
  assert.equal(stored.userId, ADMIN_TOKEN.userId);
  assert.ok(stored.authToken && stored.authToken.length > 20, 'the token is kept in sessionStorage');

  if (SCREENSHOT) {
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.mouse.move(0, 0);
    await page.screenshot({ path: SCREENSHOT });
    console.log(`screenshot written to ${SCREENSHOT}`);
  }

  // Sign out: back to the form, the session forgotten, and the token revoked on the server.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await waitForMessage(page, 'You are signed out');
  assert.deepEqual(await session(page), { userId: null, authToken: null });
  assert.equal(await page.locator('#dashboard').isHidden(), true);
  const revoked = await api('/api/v1/getLatestImportOperations', { login: stored });
  assert.equal(revoked.status, 401, 'the signed-out token no longer works');
});

test('signing in with a user id and a token shows the operations', async (t) => {
  const page = await openDashboard(t);
  await signInWithToken(page, ADMIN_TOKEN);
  await waitForRows(page, 7);
  assertDocumentedExample(await table(page));
  assert.deepEqual(await session(page), ADMIN_TOKEN);
  // The header names the user, asked from /api/v1/me.
  await page.waitForFunction(() => document.getElementById('who').textContent === 'admin');
});

test('a user without view-import-operations is told so', async (t) => {
  const page = await openDashboard(t);
  await signInWithPassword(page, VIEWER);
  await waitForMessage(page, 'You do not have the view-import-operations permission');
  assert.equal(await page.locator('#table-card').isHidden(), true);
  assert.equal(await page.locator('#rows tr').count(), 0);
  // Still signed in, so the user can sign out.
  assert.equal((await page.locator('#who').textContent()).trim(), VIEWER.user);
  assert.equal(await page.getByRole('button', { name: 'Sign out' }).isVisible(), true);
});

test('a wrong password is refused with a message', async (t) => {
  const page = await openDashboard(t);
  await signInWithPassword(page, { user: ADMIN.user, password: 'not-the-password' });
  await waitForMessage(page, 'Wrong username or password');
  assert.equal(await page.locator('#signin').isVisible(), true);
  assert.equal(await page.locator('#dashboard').isHidden(), true);
  assert.deepEqual(await session(page), { userId: null, authToken: null });
  // An unknown token: the first request is refused and the form comes back.
  await signInWithToken(page, { userId: ADMIN_TOKEN.userId, authToken: 'not-a-valid-token' });
  await waitForMessage(page, 'Your session is not valid any more: sign in again');
  assert.equal(await page.locator('#signin').isVisible(), true);
  assert.deepEqual(await session(page), { userId: null, authToken: null });
});

test('data is shown as text, counts and ISO dates are rendered, and errors are explained', async (t) => {
  const page = await openDashboard(t);
  // This tab's requests for the operations are answered here, one answer per mode.
  let mode = 'data';
  const hostile = '<img src=x onerror="window.__xss = 1">';
  await page.route('**/api/v1/getLatestImportOperations', (route) => {
    const json = (status, body) =>
      route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
    switch (mode) {
      case 'data':
        return json(200, [
          {
            _id: 'aaaaaaaaaaaaaaaaa', type: hostile, importerKey: 'csv', ts: '2024-03-05T10:20:30.000Z',
            status: 'importer_importing_messages', valid: true, user: 'u',
            _updatedAt: '2024-03-05T10:21:00.000Z', count: { total: 120, completed: 80, error: 2 },
          },
          {
            _id: 'bbbbbbbbbbbbbbbbb', type: 'Slack', importerKey: 'slack', ts: 1709634000000,
            status: 'importer_import_failed', valid: false, user: 'u',
            _updatedAt: '2024-03-05T10:00:00.000Z', count: { total: 5 },
          },
          {
            _id: 'ccccccccccccccccc', type: 'CSV', importerKey: 'csv', ts: 1709634000000,
            status: 'importer_import_cancelled', valid: false, user: 'u', _updatedAt: '2024-03-05T09:00:00.000Z',
          },
          {
            _id: 'ddddddddddddddddd', type: 'API', importerKey: 'api', ts: 1709634000000,
            status: 'importer_something_new', valid: true, user: 'u', _updatedAt: '2024-03-05T08:00:00.000Z',
          },
        ]);
      case '503':
        return json(503, { success: false, error: 'Service Unavailable' });
      case '429':
        return json(429, {
          success: false,
          error: 'Error, too many requests. Please slow down. You must wait 2 seconds before trying this endpoint again. [error-too-many-requests]',
        });
      case 'down':
        return route.abort('connectionrefused');
      default:
        throw new Error(`unknown mode ${mode}`);
    }
  });
  await signInWithToken(page, ADMIN_TOKEN);
  await waitForRows(page, 4);
  const rows = await table(page);
  assert.equal(rows[0][0].text, hostile, 'markup in data is shown as text');
  assert.equal(await page.locator('#rows img').count(), 0, 'no element made from data');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(rows[0][2].text, 'Importing messages');
  assert.equal(rows[0][2].badge, 'badge progress');
  assert.equal(rows[0][3].text, 'yes');
  assert.equal(rows[0][4].text, '120 / 80 / 2');
  assert.equal(rows[0][5].datetime, '2024-03-05T10:20:30.000Z');
  assert.equal(rows[0][5].text, 'Mar 5, 2024 10:20:30 AM UTC');
  assert.equal(rows[1][2].text, 'Import failed');
  assert.equal(rows[1][2].badge, 'badge failed');
  assert.equal(rows[1][4].text, '5 / — / —');
  assert.equal(rows[1][5].datetime, '2024-03-05T10:20:00.000Z');
  assert.equal(rows[2][2].text, 'Import cancelled');
  assert.equal(rows[2][2].badge, 'badge cancelled');
  assert.equal(rows[2][4].text, '—');
  assert.equal(rows[3][2].text, 'importer_something_new', 'an unknown status is shown as it is');

  mode = '503';
  await page.getByRole('button', { name: 'Refresh' }).click();
  await waitForMessage(page, /^The server is not reachable \(HTTP 503.*Service Unavailable\)$/);
  assert.equal(await page.locator('#rows tr').count(), 4, 'the last rows stay on screen');

  mode = 'down';
  await page.getByRole('button', { name: 'Refresh' }).click();
  // The 503 message matches "not reachable (...)" too: wait for the one without a status.
  await waitForMessage(page, /^The server is not reachable \((?!HTTP).+\)$/);
  assert.doesNotMatch(await message(page), /HTTP/);

  // 429: a countdown, then a retry by itself; the table comes back and the message goes.
  mode = '429';
  await page.getByRole('button', { name: 'Refresh' }).click();
  await waitForMessage(page, 'Too many requests: retrying in 2 s');
  await waitForMessage(page, 'Too many requests: retrying in 1 s');
  mode = 'data';
  await waitForMessage(page, '');
  await waitForRows(page, 4);
});

// At 1 280 px, the widest rows fit: no column is clipped and the table does not scroll.
test('the table fits a 1 280 px window, with times in their zone', async (t) => {
  const page = await openDashboard(t);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.route('**/api/v1/getLatestImportOperations', (route) =>
    route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify([
        {
          _id: 'aaaaaaaaaaaaaaaaa', type: 'Pending Avatars', importerKey: 'pending-avatars',
          ts: '2024-12-22T22:22:22.222Z', status: 'importer_preparing_channels', valid: true,
          user: 'u', _updatedAt: '2024-12-22T22:22:22.222Z',
          count: { total: 1234567890, completed: 1234567890, error: 1234567 },
        },
        {
          _id: 'bbbbbbbbbbbbbbbbb', type: 'Slack_Users', importerKey: 'slack-users',
          ts: 1734906142222, status: 'importer_user_selection', valid: false, user: 'u',
          _updatedAt: '2024-09-30T23:59:59.000Z',
        },
      ]),
    }),
  );
  await signInWithToken(page, ADMIN_TOKEN);
  await waitForRows(page, 2);
  const layout = await page.evaluate(() => {
    const card = document.getElementById('table-card').getBoundingClientRect();
    const wrap = document.getElementById('table-card');
    const cells = [...document.querySelectorAll('thead th, #rows td')].map((c) => c.getBoundingClientRect());
    return {
      scrollWidth: wrap.scrollWidth,
      clientWidth: wrap.clientWidth,
      cardRight: card.right,
      right: Math.max(...cells.map((c) => c.right)),
      pageScroll: document.documentElement.scrollWidth - window.innerWidth,
    };
  });
  assert.ok(layout.scrollWidth <= layout.clientWidth, `the table scrolls: ${JSON.stringify(layout)}`);
  assert.ok(layout.right <= layout.cardRight, `the last column is clipped: ${JSON.stringify(layout)}`);
  assert.ok(layout.pageScroll <= 0, `the page scrolls sideways: ${JSON.stringify(layout)}`);
  const rows = await table(page);
  assert.equal(rows[0][5].text, 'Dec 22, 2024 10:22:22 PM UTC');
  assert.equal(rows[1][6].text, 'Sep 30, 2024 11:59:59 PM UTC');
  assert.match((await page.locator('#updated').textContent()).trim(), /^Updated at \d{2}:\d{2}:\d{2}( [AP]M)? UTC$/);
});

// A user with view-import-operations but without api-bypass-rate-limit, on a server with the
// default limit (10 calls a minute per route): over 70 s, with the Refresh button pressed
// every 3 s (more than the limit allows), the page never gets a 429, on the table's route or the event stream's. It keeps
// its pace and, once X-RateLimit-Remaining is 0, sends nothing before X-RateLimit-Reset. An
// operation created meanwhile (through the other server, on the same database) appears
// through the event stream, without a reload.
test('over 70 s a user the rate limiter counts never gets a 429, and sees a new operation live', { timeout: 120_000 }, async (t) => {
  const page = await openDashboard(t, LIMITED_BASE);
  const calls = [];
  const streams = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/api/v1/getLatestImportOperations')) calls.push({ sent: Date.now() });
  });
  page.on('response', (response) => {
    if (response.url().endsWith('/api/v1/import.operations.events')) streams.push(response.status());
  });
  let navigations = 0;
  page.on('framenavigated', () => { navigations += 1; });
  page.on('response', async (response) => {
    if (!response.url().endsWith('/api/v1/getLatestImportOperations')) return;
    const headers = response.headers();
    const call = calls.findLast((c) => c.status === undefined) ?? {};
    Object.assign(call, {
      status: response.status(),
      remaining: headers['x-ratelimit-remaining'],
      reset: Number(headers['x-ratelimit-reset']),
    });
  });
  await signInWithPassword(page, WATCHER);
  await waitForRows(page, DOCUMENTED.length);
  const started = Date.now();
  let created = null;
  while (Date.now() - started < 70_000) {
    await page.waitForTimeout(3_000);
    if (created === null && Date.now() - started > 30_000) {
      // Between two presses of Refresh: only the stream can bring it within 3 s.
      const pressed = Date.now();
      created = await api('/api/v1/import.operations.upsert', {
        method: 'POST',
        login: ADMIN_TOKEN,
        body: { type: 'Nightly ETL', importerKey: 'etl', status: 'importer_importing_users' },
      });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const before = navigations;
      await page.waitForFunction(
        () => document.querySelector('#rows tr td')?.textContent.trim() === 'Nightly ETL',
        null,
        { timeout: 3_000 },
      );
      assert.equal(navigations, before, 'no reload');
      assert.ok(Date.now() - pressed < 3_000);
      const rows = await table(page);
      assert.equal(rows.length, DOCUMENTED.length + 1);
      assert.equal(rows[0][2].text, 'Importing users');
    }
    await page.getByRole('button', { name: 'Refresh' }).click();
    assert.doesNotMatch(await message(page), /Too many requests/);
  }
  await page.waitForTimeout(500);
  assert.ok(created !== null, 'an operation was created');
  assert.ok(streams.length >= 1, 'the page follows the event stream');
  assert.ok(streams.every((s) => s === 200), `event stream answers ${JSON.stringify(streams)}`);

  const statuses = calls.map((c) => c.status);
  assert.ok(!statuses.includes(429), `a 429 among ${JSON.stringify(calls)}`);
  assert.ok(statuses.every((s) => s === 200), `answers ${JSON.stringify(statuses)}`);
  // Counted by the limiter (so this user does not bypass it), and its calls of a window were
  // spent at least once: the presses of Refresh made the page wait for the window's end.
  assert.ok(calls.every((c) => c.remaining !== undefined), 'every answer has X-RateLimit-Remaining');
  const spent = calls.filter((c) => c.remaining === '0');
  assert.ok(spent.length > 0, `Remaining never reached 0: ${JSON.stringify(calls)}`);
  calls.forEach((call, i) => {
    if (call.remaining === '0' && calls[i + 1]) {
      assert.ok(calls[i + 1].sent >= call.reset, `call ${i + 1} was sent before the window's end`);
    }
  });
  // More than one window's worth of calls: the presses of Refresh were answered.
  assert.ok(calls.length >= 11, `only ${calls.length} calls in 70 s`);
  assert.equal((await table(page)).length, DOCUMENTED.length + 1);
  assert.equal(await message(page), '');
});

// Last: it adds an operation to the database.
test('the table follows the changes by itself, and a revoked session goes back to the form', async (t) => {
  const page = await openDashboard(t);
  await signInWithPassword(page, ADMIN);
  // The documented example and the operation the test before created.
  await waitForRows(page, DOCUMENTED.length + 1);
  const login = await session(page);

  // A new operation appears through the event stream, at the top.
  const created = await api('/api/v1/import.new', { method: 'POST', login: ADMIN_TOKEN, body: {} });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  await waitForRows(page, DOCUMENTED.length + 2);
  const rows = await table(page);
  assert.equal(rows[0][0].text, 'api');
  assert.equal(rows[0][2].text, 'New');
  assert.equal(rows[0][3].text, 'yes');

  // The page's token is revoked elsewhere: the stream ends, the reload says so and shows the
  // form.
  const out = await api('/api/v1/logout', { method: 'POST', login });
  assert.equal(out.status, 200);
  await waitForMessage(page, 'Your session is not valid any more: sign in again');
  assert.equal(await page.locator('#signin').isVisible(), true);
  assert.equal(await page.locator('#dashboard').isHidden(), true);
  assert.deepEqual(await session(page), { userId: null, authToken: null });
});

