// The dashboard's import page (GET /dashboard/import) end to end in headless Chromium, against
// a real importops server: sign in, upload a CSV archive generated here, choose its users and
// channels, start, and watch the import reach "Import done". Run by `tests/browser/run`.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this test with tests/browser/run`);
  return value;
}

const BASE = env('IMPORTOPS_BASE_URL');
const ADMIN = { user: env('IMPORTOPS_ADMIN_USER'), password: env('IMPORTOPS_ADMIN_PASSWORD') };
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT_MS = 30_000;

// --- A zip archive written here (stored entries, no compression) ------------------------
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function zip(files) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const nameBytes = Buffer.from(name, 'utf8');
    const data = Buffer.from(text, 'utf8');
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + data.length;
  }
  const centralSize = centrals.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}

// Rocket.Chat's CSV layout: users.csv (username, email, name), channels.csv (name, creator,
// type, members), a folder of messages per channel.
const ARCHIVE = zip({
  'users.csv': 'page.alice,page.alice@example.com,Alice Page\npage.bob,page.bob@example.com,Bob Page\npage.carol,page.carol@example.com,Carol Page\n',
  'channels.csv': '"page-general","page.alice","public","page.alice;page.bob"\n',
  'page-general/messages.csv': '"page.alice","1700000000000","hello from the page"\n"page.bob","1700000001000","hi"\n',
});

let userDataDir;
let context;

before(async () => {
  userDataDir = mkdtempSync(join(tmpdir(), 'importops-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    locale: 'en-US',
    timezoneId: 'UTC',
  });
});

after(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

test('an uploaded CSV archive is imported with the users chosen, and the history shows it', async (t) => {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  const requests = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  page.on('request', (request) => {
    if (request.url().includes('/api/v1/getImportProgress')) requests.push(Date.now());
  });
  t.after(() => page.close());

  const response = await page.goto(`${BASE}/dashboard/import`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'], /default-src 'none'/);

  // Sign in on the page itself.
  await page.locator('#user').fill(ADMIN.user);
  await page.locator('#password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#upload-form').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#importer option').length > 0);
  const importers = await page.$$eval('#importer option', (options) => options.map((o) => o.value));
  assert.ok(importers.includes('csv'), `importers: ${importers}`);

  // Upload the archive (read as base64 in the browser).
  await page.selectOption('#importer', 'csv');
  await page.setInputFiles('#file', { name: 'page-import.zip', mimeType: 'application/zip', buffer: ARCHIVE });
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.locator('#selection').waitFor({ state: 'visible' });
  const users = await page.$$eval('#users label', (labels) => labels.map((l) => l.textContent.trim()));
  assert.deepEqual(users.sort(), ['page.alice', 'page.bob', 'page.carol']);
  const channels = await page.$$eval('#channels label', (labels) => labels.map((l) => l.textContent.trim()));
  assert.ok(channels.includes('page-general'), `channels: ${channels}`);

  // Leave page.carol out, start, and watch the progress reach the end.
  await page.locator('#users label', { hasText: 'page.carol' }).locator('input').uncheck();
  await page.getByRole('button', { name: 'Start import' }).click();
  await page.waitForFunction(
    () => ['importer_done', 'importer_import_failed'].includes(document.getElementById('progress-step').dataset.step),
    null,
    { timeout: WAIT_MS },
  );
  assert.equal(await page.locator('#progress-step').getAttribute('data-step'), 'importer_done');
  assert.equal((await page.locator('#progress-step').textContent()).trim(), 'Import done');

  // Progress was polled gently: never two requests within 900 ms.
  for (let i = 1; i < requests.length; i++) {
    assert.ok(requests[i] - requests[i - 1] >= 900, `progress polled ${requests[i] - requests[i - 1]} ms apart`);
  }

  // The history: Rocket.Chat's columns, the current operation first.
  const headings = await page.$$eval('#history th', (ths) => ths.map((th) => th.textContent.trim()));
  assert.deepEqual(headings, ['Type', 'Last Updated', 'Status', 'File', 'Users', 'Contacts', 'Channels', 'Messages', 'Total']);
  await page.waitForFunction(() => {
    const row = document.querySelector('#history tbody tr.current');
    return row && row.cells[2].textContent.trim() === 'Import done';
  });
  const first = await page.$$eval('#history tbody tr:first-child td', (cells) => cells.map((c) => c.textContent.trim()));
  assert.equal(first[0], 'CSV');
  assert.equal(first[2], 'Import done');
  assert.match(first[3], /_page-import\.zip$/);
  assert.equal(await page.locator('#history tbody tr:first-child').getAttribute('class'), 'current');

  // The API agrees with the page.
  const session = await page.evaluate(() => ({
    userId: sessionStorage.getItem('importops.userId'),
    authToken: sessionStorage.getItem('importops.authToken'),
  }));
  const progress = await fetch(`${BASE}/api/v1/getImportProgress`, {
    headers: { 'X-User-Id': session.userId, 'X-Auth-Token': session.authToken },
  }).then((r) => r.json());
  assert.equal(progress.step, 'importer_done');
  assert.deepEqual(problems, [], 'no script errors and no CSP violations');
});
