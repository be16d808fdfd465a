// viewport-server's own pages in real headless Chromium, walked as a person would, from a
// fresh database: the one-time /setup link, sign out and in (by keyboard), the URL `vpd pair`
// printed, Approve, "Add machine" and `vpd pair CODE`, a live session's output, Members
// add/remove, Machines → Revoke (the daemon loses that pairing), sign out.
// Run by tests/browser.rs (server_pages_in_headless_chromium), which starts a server on a
// fresh database and passes:
//   VPD_BIN, SERVER_BIN, SERVER_DB, SERVER_URL, SERVER_LOG, MACHINE_HOME, REPO_DIR, ARTIFACTS
// Every page is checked at 400 px and 1280 px wide (screenshots in $ARTIFACTS, no sideways
// scroll, WCAG AA contrast, named controls, every control reachable with Tab).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { launch, shotIn, checkLabels, checkContrast } from './common.mjs';

const env = process.env;
for (const k of ['VPD_BIN', 'SERVER_BIN', 'SERVER_DB', 'SERVER_URL', 'SERVER_LOG', 'MACHINE_HOME', 'REPO_DIR', 'ARTIFACTS']) {
  assert.ok(env[k], `${k} is not set: run this through tests/browser.rs (cargo nextest run -p vpd-e2e --test browser)`);
}
mkdirSync(env.ARTIFACTS, { recursive: true });

const vpdEnv = { HOME: env.MACHINE_HOME, PATH: env.PATH, VPD_UI_PORT: '0', VPD_KEYRING: 'off', VPD_LOG: 'debug' };
const vpdText = (...args) => execFileSync(env.VPD_BIN, args, { env: vpdEnv, cwd: env.MACHINE_HOME, encoding: 'utf8' });
const vpd = (...args) => JSON.parse(vpdText(...args, '--json').trim().split('\n').pop());
const admin = (args, input) => JSON.parse(execFileSync(env.SERVER_BIN, ['admin', '--db', env.SERVER_DB, '--json', ...args], { encoding: 'utf8', input }) || 'null');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `f` until it returns a truthy value (generous deadline: the machine may be busy).
async function eventually(what, f, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// Every visible control can be reached with Tab, in a page whose first stop is in the page.
async function checkKeyboard(page, name) {
  const controls = await page.evaluate(() => {
    const els = [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')]
      .filter((el) => el.offsetParent !== null && !el.disabled);
    els.forEach((el, i) => el.setAttribute('data-kb', String(i)));
    return els.length;
  });
  await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
  const seen = new Set();
  for (let i = 0; i < controls * 2 + 4 && seen.size < controls; i++) {
    await page.keyboard.press('Tab');
    const k = await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('data-kb'));
    if (k !== null) seen.add(k);
  }
  const missed = await page.evaluate((seen) => [...document.querySelectorAll('[data-kb]')]
    .filter((el) => !seen.includes(el.getAttribute('data-kb')))
    .map((el) => el.outerHTML.slice(0, 80)), [...seen]);
  assert.deepEqual(missed, [], `${name}: controls that Tab never reaches`);
}

// The page as it is, at both widths: screenshots, no sideways scroll, names, contrast, keys.
async function look(page, name) {
  for (const width of [1280, 400]) {
    await page.setViewportSize({ width, height: 900 });
    await shotIn(env.ARTIFACTS, page, `${name}-${width}`);
  }
  await checkLabels(page, name);
  await checkContrast(page, name);
  await checkKeyboard(page, name);
  await page.setViewportSize({ width: 1280, height: 900 });
}

// Starts `vpd ARGS` as a person would, reading what it prints; resolves the Code/Open lines.
function startPair(args) {
  const child = spawn(env.VPD_BIN, args, { env: vpdEnv, cwd: env.MACHINE_HOME, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const done = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, done, text: () => out };
}

test('a person sets up the server, approves pairings, watches a session, manages members and machines', async () => {
  const browser = await launch();
  const pairs = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const errors = [];
    // A status the current step expects (the wrong password's 401) is not an error.
    let expected = null;
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (expected && m.text().includes(`status of ${expected} `)) return;
      errors.push(`${page.url()}: ${m.text()}`);
    });
    // Every form post must be answered from the page itself, never "refused".
    page.on('response', (r) => {
      if (r.request().method() === 'POST' && r.status() === 403) errors.push(`POST ${r.url()} refused with 403`);
    });

    // 1. The one-time setup link the server logged at start.
    const setup = await eventually('the setup link in the server log', () =>
      (/(http:\/\/\S+\/setup\?token=[A-Za-z0-9_-]+)/.exec(readFileSync(env.SERVER_LOG, 'utf8')) || [])[1]);
    await page.goto(setup);
    await page.getByRole('heading', { name: 'Set up Viewport', level: 1 }).waitFor();
    await look(page, 'server-01-setup');
    await page.getByLabel('Your email').fill('owner@example.com');
    await page.getByLabel('Password (at least 8 characters)').fill('correct horse battery');
    await page.getByLabel('Workspace name').fill('Acme Engineering');
    await page.getByLabel('Workspace slug').fill('acme');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'Your workspaces', level: 1 }).waitFor();
    await page.getByRole('link', { name: 'Acme Engineering' }).waitFor();
    await look(page, 'server-02-workspaces');
    // The link works once.
    const again = await (await browser.newContext()).newPage();
    assert.equal((await again.goto(setup)).status(), 404, 'the setup link is single use');

    // 2. Sign out, then sign in again with the keyboard alone.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    await look(page, 'server-03-signin');
    await page.getByLabel('Email').focus();
    await page.keyboard.type('owner@example.com');
    await page.keyboard.press('Tab');
    await page.keyboard.type('wrong password');
    expected = 401;
    await page.keyboard.press('Enter');
    await page.getByText('Wrong email or password.').waitFor();
    expected = null;
    await page.getByLabel('Password').fill('correct horse battery');
    await page.getByLabel('Password').press('Enter');
    await page.getByRole('heading', { name: 'Your workspaces', level: 1 }).waitFor();

    // A second workspace for the same person, so the pair page has a choice to make.
    admin(['org', 'create', 'Beta Labs', '--slug', 'beta']);
    admin(['member', 'add', '--org', 'beta', '--user', 'owner@example.com']);
    await page.reload();
    await page.getByRole('link', { name: 'Beta Labs' }).waitFor();

    // 3. `vpd pair --org acme`: open the URL it printed; the same code; Approve.
    const p1 = startPair(['pair', '--org', 'acme', '--server', env.SERVER_URL, '--no-browser', '--name', 'ann-laptop']);
    pairs.push(p1);
    const [, code] = await eventually('the code vpd pair prints', () => /Code:\s+([A-Z0-9]{4}-[A-Z0-9]{4})/.exec(p1.text()));
    const [, url] = await eventually('the URL vpd pair prints', () => /Open:\s+(\S+)/.exec(p1.text()));
    assert.ok(url.startsWith(env.SERVER_URL) && url.includes(code), url);
    await page.goto(url);
    await page.getByRole('heading', { name: 'Pair this machine?', level: 1 }).waitFor();
    assert.equal((await page.locator('p.code').textContent()).trim(), code, 'the page shows the code vpd printed');
    await page.getByText('ann-laptop').first().waitFor();
    const select = page.getByLabel('Workspace');
    assert.equal(await select.locator('option').count(), 2, 'both workspaces are offered');
    assert.equal(await select.locator('option:checked').textContent(), 'Acme Engineering (acme)', '--org acme is preselected');
    await look(page, 'server-04-approve');
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByRole('heading', { name: 'Approved', level: 1 }).waitFor();
    await look(page, 'server-05-approved');
    assert.equal(await p1.done, 0, `vpd pair finishes:\n${p1.text()}`);
    assert.match(p1.text(), /Paired with Acme Engineering/);

    // 4. "Add machine" in the other workspace → a code → `vpd pair CODE`.
    await page.goto(`${env.SERVER_URL}/`);
    await page.locator('tr', { hasText: 'Beta Labs' }).getByRole('link', { name: 'Add machine' }).click();
    await page.getByRole('button', { name: 'Make a code' }).waitFor();
    await look(page, 'server-06-add-machine');
    await page.getByRole('button', { name: 'Make a code' }).click();
    const minted = (await page.locator('p.code').textContent()).trim();
    assert.match(minted, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    await look(page, 'server-07-code');
    const p2 = startPair(['pair', minted, '--server', env.SERVER_URL, '--no-browser']);
    pairs.push(p2);
    assert.equal(await p2.done, 0, `vpd pair CODE finishes:\n${p2.text()}`);
    assert.match(p2.text(), /Paired with Beta Labs/);
    const paired = vpd('status').pairings;
    assert.equal(paired.length, 2, JSON.stringify(paired));

    // 5. A session in a directory bound to Acme: its output appears live on the Sessions page.
    vpd('bind', env.REPO_DIR, '--org', 'acme');
    const sessionId = vpdText('session', 'start', '--cwd', env.REPO_DIR, '--agent', 'claude', '--name', 'browser-walk').trim();
    vpdText('session', 'frame', sessionId, '--data', 'first line from the agent\r\n');
    await page.goto(`${env.SERVER_URL}/orgs/acme/sessions`);
    const link = page.getByRole('link', { name: sessionId });
    await eventually('the session on the Sessions page', async () => {
      if (await link.count()) return true;
      await page.reload();
      return false;
    });
    await look(page, 'server-08-sessions');
    await link.click();
    await page.getByText('first line from the agent').waitFor({ timeout: 30000 });
    const navigations = [];
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });
    vpdText('session', 'frame', sessionId, '--data', 'second line, live\r\n');
    await page.getByText('second line, live').waitFor({ timeout: 30000 });
    // The page is a terminal screen: a carriage return overwrites, colours show.
    vpdText('session', 'frame', sessionId, '--data', 'tests 10%\r\x1b[32mtests passed\x1b[0m\r\n');
    await page.locator('pre#output span.f2', { hasText: 'tests passed' }).waitFor({ timeout: 30000 });
    assert.ok(!(await page.locator('pre#output').textContent()).includes('10%'), 'the carriage return overwrote the progress');
    assert.deepEqual(navigations, [], 'the new output came without a reload');
    // The header's frame count follows the output (1 when the page loaded, now 3).
    await eventually('the frame count to follow', async () => (await page.locator('#frames').textContent()).trim() === '3');
    await look(page, 'server-09-session-live');
    vpdText('session', 'end', sessionId, '--exit-code', '0');

    // 6. Members: add an existing user as admin, make them a member, then remove them; the
    // Audit tab shows who did it.
    admin(['user', 'create', 'bob@example.com', '--password-stdin'], 'another long password');
    await page.goto(`${env.SERVER_URL}/orgs/acme/members`);
    await page.getByLabel('Add an existing user by email').fill('bob@example.com');
    await page.getByLabel('Role', { exact: true }).selectOption('admin');
    await page.getByRole('button', { name: 'Add member' }).click();
    const bob = page.locator('tr', { hasText: 'bob@example.com' });
    await bob.waitFor();
    const bobsRole = bob.getByLabel('Role of bob@example.com', { exact: true });
    assert.equal(await bobsRole.inputValue(), 'admin');
    assert.equal(admin(['member', 'list', '--org', 'acme']).find((m) => m.email === 'bob@example.com').role, 'admin');
    await bobsRole.selectOption('member');
    await bob.getByRole('button', { name: 'Change the role of bob@example.com' }).click();
    await eventually('bob to be a member', async () => (await bobsRole.inputValue()) === 'member');
    assert.equal(admin(['member', 'list', '--org', 'acme']).find((m) => m.email === 'bob@example.com').role, 'member');
    await look(page, 'server-10-members');
    await bob.getByRole('button', { name: 'Remove' }).click();
    await bob.waitFor({ state: 'detached' });
    assert.ok(!admin(['member', 'list', '--org', 'acme']).some((m) => m.email === 'bob@example.com'));
    await page.getByRole('link', { name: 'Audit' }).click();
    for (const action of ['member.removed', 'member.role_changed', 'member.added', 'machine.paired']) {
      await page.locator('tr', { hasText: action }).first().waitFor();
    }
    assert.ok(await page.locator('tr', { hasText: 'member.role_changed' }).getByText('owner@example.com').count());
    await look(page, 'server-10b-audit');

    // 7. Machines → Revoke: the daemon loses the Acme pairing, keeps Beta's.
    await page.goto(`${env.SERVER_URL}/orgs/acme/machines`);
    const row = page.locator('tr', { hasText: 'ann-laptop' });
    await row.getByText('online').waitFor({ timeout: 30000 });
    await look(page, 'server-11-machines');
    await row.getByRole('button', { name: 'Revoke' }).click();
    await page.locator('tr', { hasText: 'ann-laptop' }).getByText('revoked').waitFor();
    await eventually('the daemon to drop the revoked pairing', () => {
      const left = vpd('status').pairings;
      return left.length === 1 && left[0].workspaceName === 'Beta Labs';
    });
    await look(page, 'server-12-revoked');

    // 8. Sign out: the org pages ask for a sign-in again.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    await page.goto(`${env.SERVER_URL}/orgs/acme/machines`);
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();

    assert.deepEqual(errors, [], 'no script, CSP or refused-form errors');
  } catch (e) {
    for (const ctx of browser.contexts()) {
      for (const [i, p] of ctx.pages().entries()) {
        await p.screenshot({ path: `${env.ARTIFACTS}/server-failure-${i}.png`, fullPage: true }).catch(() => {});
      }
    }
    for (const p of pairs) console.error(`---- vpd pair output ----\n${p.text()}`);
    throw e;
  } finally {
    for (const p of pairs) p.child.kill();
    await browser.close();
  }
});
