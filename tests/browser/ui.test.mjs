// The web UI in real headless Chromium against the real daemon and viewport-server.
// Run by tests/browser.rs, which starts the server, makes the user and org, and passes:
//   VPD_BIN, SERVER_BIN, SERVER_DB, SERVER_URL, MACHINE_HOME, ORG_SLUG, EMAIL, CODE_DIR,
//   REPO_DIR, FOLDER_REPO, NEVER_DIR, ARTIFACTS
// Screenshots of each page go to $ARTIFACTS (400 px wide: the tray window's size).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { launch, shotIn, checkLabels, checkContrast } from './common.mjs';

const env = process.env;
for (const k of ['VPD_BIN', 'SERVER_BIN', 'SERVER_DB', 'SERVER_URL', 'MACHINE_HOME', 'ORG_SLUG', 'EMAIL', 'CODE_DIR', 'REPO_DIR', 'FOLDER_REPO', 'NEVER_DIR', 'ARTIFACTS']) {
  assert.ok(env[k], `${k} is not set: run this through tests/browser.rs (cargo nextest run -p vpd-e2e --test browser)`);
}
mkdirSync(env.ARTIFACTS, { recursive: true });
const shot = (page, name) => shotIn(env.ARTIFACTS, page, name);

const vpdEnv = { HOME: env.MACHINE_HOME, PATH: env.PATH, VPD_UI_PORT: '0', VPD_KEYRING: 'off', VPD_LOG: 'debug' };
const vpd = (...args) => JSON.parse(execFileSync(env.VPD_BIN, [...args, '--json'], { env: vpdEnv, cwd: env.MACHINE_HOME, encoding: 'utf8' }).trim().split('\n').pop());
const admin = (...args) => JSON.parse(execFileSync(env.SERVER_BIN, ['admin', '--db', env.SERVER_DB, '--json', ...args], { encoding: 'utf8' }) || 'null');

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
    // The machine name the org sees: the host name unless the person types another.
    assert.ok((await page.locator('#pair-name').inputValue()).length > 0, 'the host name is prefilled');
    await page.getByLabel('Machine name the org sees').fill("Ann's laptop");
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
    // Named before pairing, renamed here: the platform's machine list follows (issue 11 item 7).
    const machines = () => admin('machine', 'list', '--org', env.ORG_SLUG);
    assert.equal(machines()[0].name, "Ann's laptop");
    const nameField = page.getByLabel('Machine name in Acme Engineering');
    assert.equal(await nameField.inputValue(), "Ann's laptop");
    await nameField.fill("Ann's workstation");
    await page.getByRole('button', { name: 'Rename', exact: true }).click();
    await page.getByText('This machine is now "Ann\'s workstation" in Acme Engineering.').waitFor({ timeout: 10000 });
    assert.equal(machines()[0].name, "Ann's workstation");
    assert.equal(vpd('status').pairings[0].machineName, "Ann's workstation");

    // The tray's "Unpair…" opens this page with ?unpair=1: the confirmation comes up at
    // once; Cancel keeps the pairing.
    const wsId = vpd('status').pairings[0].workspaceId;
    await page.evaluate((id) => { location.hash = `#/pairing/${id}?unpair=1`; }, wsId);
    await page.locator('#unpair-dialog').waitFor({ state: 'visible' });
    await page.locator('#unpair-dialog').getByText('Unpair Acme Engineering?').waitFor();
    // SPEC A3: bindings stay unless the person asks for them to go.
    const forget = page.getByLabel('Also remove its directory bindings');
    assert.equal(await forget.isChecked(), false, 'bindings are kept by default');
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
    await page.getByText('2 repositories').waitFor();
    // Never (issue 11 item 5): the suggestion goes to the one memory of "no", listed with
    // Undo; Undo brings it back.
    const never = page.locator(`.suggestion[data-directory="${env.NEVER_DIR}"]`);
    await never.waitFor({ timeout: 15000 });
    await never.getByRole('button', { name: 'Never', exact: true }).click();
    await never.waitFor({ state: 'detached', timeout: 10000 });
    const declined = page.locator('.card', { hasText: '~/code/web' }).filter({ has: page.getByRole('button', { name: 'Undo' }) });
    await declined.getByText('Bind to Acme Engineering').waitFor({ timeout: 10000 });
    await shot(page, '05a-never-with-undo');
    await declined.getByRole('button', { name: 'Undo' }).click();
    await never.waitFor({ timeout: 15000 });
    await page.getByText('Nothing. A Never, anywhere, is listed here with Undo.').waitFor();
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

    // Bind a folder… (issue 11 items 1 and 2): a folder holding two repositories, typed
    // with the daemon's completion; recursive is the default and says why; the org is
    // preselected; a session started in a repository below it streams.
    await page.getByRole('link', { name: 'Directories', exact: true }).click();
    await page.getByRole('button', { name: 'Bind a folder…' }).click();
    const field = page.locator('#bind-path');
    await field.waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'bind-path', 'the dialog opens on its path field');
    await field.pressSequentially('~/cli');
    await page.locator('#bind-completions option[value="~/clients/"]').waitFor({ state: 'attached', timeout: 10000 });
    await field.fill('~/clients/');
    await page.locator('#bind-completions option[value="~/clients/acme/"]').waitFor({ state: 'attached', timeout: 10000 });
    await field.fill('~/clients/acme');
    await page.locator('#bind-explain').getByText('holds 2 repositories below it').waitFor({ timeout: 10000 });
    assert.equal(await page.locator('#bind-recursive').isChecked(), true, 'a folder of repositories defaults to recursive');
    await page.getByText('(2 repositories today)').waitFor();
    assert.equal(await page.locator('#bind-org').inputValue(), st.pairings[0].pairingId, 'the only org is preselected');
    await checkLabels(page, 'bind a folder');
    await checkContrast(page, 'bind a folder');
    await shot(page, '07b-bind-folder');
    await page.locator('#bind-form').getByRole('button', { name: 'Bind', exact: true }).click();
    await page.locator('#bind-result').getByText('every repository below it: 2 today, and any cloned there later').waitFor({ timeout: 10000 });
    // The form is ready for the next folder: no description of the one just bound.
    await page.locator('#bind-explain').getByText('Sessions started in the folder you bind stream to the organization you choose.').waitFor();
    assert.equal(await page.locator('#bind-recursive').isChecked(), false);
    await page.locator('tr', { hasText: '~/clients/acme' }).getByText('(and subfolders)').waitFor({ timeout: 10000 });
    await shot(page, '07c-bind-folder-bound');
    // Completion needs the page's CSRF header, even on GET.
    const bare = await context.request.get(new URL('/api/folders/complete?path=~/', page.url()).href);
    assert.equal(bare.status(), 403, 'completion with the cookie but without the CSRF header');
    const below = execFileSync(env.VPD_BIN, ['session', 'start', '--cwd', env.FOLDER_REPO, '--agent', 'browser-test', '--name', 'below-check'],
      { env: vpdEnv, encoding: 'utf8' }).trim();
    execFileSync(env.VPD_BIN, ['session', 'frame', below, '--data', 'hello from a repository below'], { env: vpdEnv });
    await page.getByRole('link', { name: 'Sessions', exact: true }).click();
    const belowRow = page.locator('tr', { hasText: 'below-check' });
    await belowRow.getByText('streaming', { exact: true }).waitFor({ timeout: 10000 });
    await belowRow.getByText('Acme Engineering').waitFor();

    // Revoked on the platform: the activity list says so, live; the session is cut.
    const machineId = st.pairings[0].machineId;
    admin('machine', 'revoke', '--org', env.ORG_SLUG, machineId);
    await page.getByText('cut (revoked)').first().waitFor({ timeout: 15000 });
    await page.getByRole('link', { name: 'Activity', exact: true }).click();
    await page.getByText("Acme Engineering revoked this machine's pairing").waitFor({ timeout: 15000 });
    await checkLabels(page, 'activity');
    await checkContrast(page, 'activity');
    await shot(page, '08-activity');

    // The Overview follows: no pairing left.
    await page.getByRole('link', { name: 'Overview', exact: true }).click();
    await page.getByText('This machine is not paired with any workspace yet.').waitFor({ timeout: 10000 });

    // Pairing again (SPEC A3): the bindings kept from the revoked pairing wait, inert, for a
    // yes; the pairing panel asks, and Resume makes them stream again.
    const kept = vpd('status').directories;
    assert.ok(kept.length === 2 && kept.every((d) => d.state === 'waiting'), JSON.stringify(kept));
    await page.getByRole('link', { name: 'Directories', exact: true }).click();
    await page.getByText('waits for a pairing on ' + kept[0].server).first().waitFor({ timeout: 10000 });
    await shot(page, '08a-directories-waiting');
    await page.getByRole('link', { name: 'Overview', exact: true }).click();
    await page.locator('#pair-button').click();
    const again = (await page.locator('#pairing-code').textContent({ timeout: 15000 })).trim();
    admin('pairing', 'approve', again, '--org', env.ORG_SLUG, '--user', env.EMAIL);
    await page.locator('#resume-question').getByText('Resume 2 directory bindings of Acme Engineering?').waitFor({ timeout: 15000 });
    await checkContrast(page, 'resume question');
    await shot(page, '08b-resume-bindings');
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await page.getByText('Resumed 2 directory bindings: new sessions there stream.').waitFor({ timeout: 10000 });
    assert.ok(vpd('status').directories.every((d) => d.state === 'bound'), JSON.stringify(vpd('status').directories));

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
    await darkPage.getByText('cut (revoked)').first().waitFor();
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
