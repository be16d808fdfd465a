// The web UI in real headless Chromium against the real daemon and viewport-server.
// Run by tests/browser.rs, which starts the server, makes the user and org, and passes:
//   VPD_BIN, SERVER_BIN, SERVER_DB, SERVER_URL, MACHINE_HOME, ORG_SLUG, EMAIL, CODE_DIR,
//   REPO_DIR, ARTIFACTS
// Screenshots of each page go to $ARTIFACTS (400 px wide: the tray window's size).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const env = process.env;
for (const k of ['VPD_BIN', 'SERVER_BIN', 'SERVER_DB', 'SERVER_URL', 'MACHINE_HOME', 'ORG_SLUG', 'EMAIL', 'CODE_DIR', 'REPO_DIR', 'ARTIFACTS']) {
  assert.ok(env[k], `${k} is not set: run this through tests/browser.rs (cargo nextest run -p vpd-e2e --test browser)`);
}
mkdirSync(env.ARTIFACTS, { recursive: true });

const vpdEnv = { HOME: env.MACHINE_HOME, PATH: env.PATH, VPD_UI_PORT: '0', VPD_KEYRING: 'off', VPD_LOG: 'debug' };
const vpd = (...args) => JSON.parse(execFileSync(env.VPD_BIN, [...args, '--json'], { env: vpdEnv, cwd: env.MACHINE_HOME, encoding: 'utf8' }).trim().split('\n').pop());
const admin = (...args) => JSON.parse(execFileSync(env.SERVER_BIN, ['admin', '--db', env.SERVER_DB, '--json', ...args], { encoding: 'utf8' }) || 'null');

const launch = () => chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});

async function shot(page, name) {
  await page.screenshot({ path: `${env.ARTIFACTS}/${name}.png`, fullPage: true });
  // Readable at 400 px: nothing sticks out sideways.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `${name}: the page scrolls sideways by ${overflow}px at 400px wide`);
}

// Every control has a name a screen reader can read.
async function checkLabels(page, name) {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => {
      const text = (el.getAttribute('aria-label') || el.textContent || '').trim();
      const labelled = el.labels && el.labels.length > 0;
      return !(text || labelled || el.getAttribute('aria-labelledby'));
    })
    .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unlabelled, [], `${name}: controls without a name`);
}

// Text meets WCAG AA contrast (4.5:1, or 3:1 for large text) against its real background.
async function checkContrast(page, name) {
  const bad = await page.evaluate(() => {
    const parse = (c) => {
      const m = /rgba?\(([^)]+)\)/.exec(c);
      if (!m) return null;
      const p = m[1].split(',').map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0.5) return c;
      }
      return parse(getComputedStyle(document.documentElement).backgroundColor) || { r: 255, g: 255, b: 255, a: 1 };
    };
    const out = [];
    for (const el of document.querySelectorAll('body *')) {
      if (el.offsetParent === null || el.closest('[disabled]')) continue;
      if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
      const cs = getComputedStyle(el);
      const fg = parse(cs.color);
      if (!fg) continue;
      const [a, b] = [lum(fg), lum(background(el))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const size = parseFloat(cs.fontSize);
      const large = size >= 24 || (parseInt(cs.fontWeight, 10) >= 700 && size >= 18.66);
      if (ratio < (large ? 3 : 4.5)) out.push(`${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 40)}": ${ratio.toFixed(2)}:1`);
    }
    return out;
  });
  assert.deepEqual(bad, [], `${name}: text below WCAG AA contrast`);
}

test('log in, pair, bind from a suggestion, see a session, see a revocation', async () => {
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 400, height: 860 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

    // The one-time login link (what `vpd ui` opens) sets the session cookie.
    const { url: link } = vpd('ui', '--no-browser');
    assert.match(link, /^http:\/\/127\.0\.0\.1:\d+\/login\?t=/);
    await page.goto(link);
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    await page.getByText('This machine is not paired with any workspace yet.').waitFor();
    await checkLabels(page, 'overview');
    await checkContrast(page, 'overview');
    await shot(page, '01-overview-unpaired');

    // The same link again, in a fresh browser: refused.
    const other = await browser.newContext();
    const replay = await (await other.newPage()).goto(link);
    assert.equal(replay.status(), 403);
    await other.close();

    // Pair through the UI: the code and the approval link show while waiting.
    await page.locator('summary', { hasText: 'Server URL' }).click();
    await page.locator('#pair-server').fill(env.SERVER_URL);
    await page.locator('#pair-button').click();
    const code = (await page.locator('#pairing-code').textContent({ timeout: 15000 })).trim();
    const approval = await page.locator('#pairing-link').getAttribute('href');
    assert.match(code, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    assert.ok(approval.startsWith(env.SERVER_URL) && approval.includes(code), approval);
    await shot(page, '02-pairing-waiting');

    // Approved on the platform: the pairing appears and turns connected, live.
    admin('pairing', 'approve', code, '--org', env.ORG_SLUG, '--user', env.EMAIL);
    await page.locator('#pairing-panel').getByText('Paired with Acme Engineering.').waitFor({ timeout: 15000 });
    const card = page.locator('.card', { has: page.getByRole('link', { name: 'Acme Engineering' }) });
    await card.getByText('connected', { exact: true }).waitFor({ timeout: 15000 });
    await shot(page, '03-overview-connected');

    // The pairing's own page.
    await page.getByRole('link', { name: 'Acme Engineering' }).click();
    await page.getByRole('heading', { name: 'Acme Engineering', level: 1 }).waitFor();
    for (const field of ['Organization', 'Relay', 'State', 'Last error', 'Machine id', 'Paired at']) {
      await page.locator('dt', { hasText: field }).first().waitFor();
    }
    await checkLabels(page, 'pairing');
    await shot(page, '04-pairing');

    // The tray's "Unpair…" opens this page with ?unpair=1: the confirmation comes up at
    // once; Cancel keeps the pairing.
    const wsId = vpd('status').pairings[0].workspaceId;
    await page.evaluate((id) => { location.hash = `#/pairing/${id}?unpair=1`; }, wsId);
    await page.locator('#unpair-dialog').waitFor({ state: 'visible' });
    await page.locator('#unpair-dialog').getByText('Unpair Acme Engineering?').waitFor();
    await shot(page, '04b-unpair-confirmation');
    await page.locator('#unpair-cancel').click();
    await page.locator('#unpair-dialog').waitFor({ state: 'hidden' });
    assert.equal(vpd('status').pairings.length, 1, 'Cancel keeps the pairing');

    // Directories: watch the code folder; its repository is suggested; bind it.
    await page.getByRole('link', { name: 'Directories', exact: true }).click();
    await page.getByRole('heading', { name: 'Directories', level: 1 }).waitFor();
    await page.locator('#watch-path').fill(env.CODE_DIR);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    const suggestion = page.locator(`.suggestion[data-directory="${env.REPO_DIR}"]`);
    await suggestion.waitFor({ timeout: 15000 });
    await suggestion.getByText('suggests Acme Engineering').waitFor();
    await page.getByText('1 repository').waitFor();
    await checkLabels(page, 'directories');
    await checkContrast(page, 'directories');
    await shot(page, '05-directories-suggestion');
    await suggestion.getByRole('button', { name: 'Bind', exact: true }).click();
    await suggestion.waitFor({ state: 'detached', timeout: 10000 });
    const bound = page.locator('tr', { hasText: 'Acme Engineering' }).filter({ has: page.getByRole('button', { name: 'Unbind' }) });
    await bound.getByText('bound', { exact: true }).waitFor({ timeout: 10000 });
    await shot(page, '06-directories-bound');
    const st = vpd('status');
    assert.ok(st.directories.some((d) => d.directory === env.REPO_DIR && d.state === 'bound'), JSON.stringify(st.directories));

    // A session started in the bound repository shows as streaming to the org.
    const sessionId = execFileSync(env.VPD_BIN, ['session', 'start', '--cwd', env.REPO_DIR, '--agent', 'browser-test', '--name', 'ui-check'],
      { env: vpdEnv, encoding: 'utf8' }).trim();
    execFileSync(env.VPD_BIN, ['session', 'frame', sessionId, '--data', 'hello from the browser test'], { env: vpdEnv });
    await page.getByRole('link', { name: 'Sessions', exact: true }).click();
    const row = page.locator('tr', { hasText: 'ui-check' });
    await row.getByText('streaming', { exact: true }).waitFor({ timeout: 10000 });
    await row.getByText('Acme Engineering').waitFor();
    await checkContrast(page, 'sessions');
    await shot(page, '07-sessions');

    // Revoked on the platform: the activity list says so, live; the session is cut.
    const machineId = st.pairings[0].machineId;
    admin('machine', 'revoke', '--org', env.ORG_SLUG, machineId);
    await page.getByText('cut (revoked)').waitFor({ timeout: 15000 });
    await page.getByRole('link', { name: 'Activity', exact: true }).click();
    await page.getByText("Acme Engineering revoked this machine's pairing").waitFor({ timeout: 15000 });
    await checkLabels(page, 'activity');
    await checkContrast(page, 'activity');
    await shot(page, '08-activity');

    // The Overview follows: no pairing left.
    await page.getByRole('link', { name: 'Overview', exact: true }).click();
    await page.getByText('This machine is not paired with any workspace yet.').waitFor({ timeout: 10000 });

    // Keyboard: on a fresh load, the skip link is the first stop.
    await page.reload();
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement.textContent.trim());
    assert.match(first, /skip/i);

    // Dark mode: the same pages, readable too.
    const dark = await browser.newContext({ viewport: { width: 400, height: 860 }, colorScheme: 'dark' });
    const darkPage = await dark.newPage();
    await darkPage.goto(vpd('ui', '--no-browser').url);
    await darkPage.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    await checkContrast(darkPage, 'overview (dark)');
    await shot(darkPage, '09-overview-dark');
    await darkPage.getByRole('link', { name: 'Sessions', exact: true }).click();
    await darkPage.getByText('cut (revoked)').waitFor();
    await checkContrast(darkPage, 'sessions (dark)');

    assert.deepEqual(errors, [], 'no script or CSP errors in the console');
  } catch (e) {
    for (const ctx of browser.contexts()) {
      for (const [i, p] of ctx.pages().entries()) {
        await p.screenshot({ path: `${env.ARTIFACTS}/failure-${i}.png`, fullPage: true }).catch(() => {});
      }
    }
    throw e;
  } finally {
    await browser.close();
  }
});
