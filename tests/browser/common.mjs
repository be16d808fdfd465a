// Helpers shared by the browser tests (ui.test.mjs: the daemon's web UI; server.test.mjs:
// viewport-server's pages): Debian's Chromium through playwright-core, screenshots that also
// check for sideways scrolling, accessible names and WCAG AA contrast.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const launch = () => chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});

export async function shotIn(dir, page, name) {
  await page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
  // Readable at 400 px: nothing sticks out sideways.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `${name}: the page scrolls sideways by ${overflow}px at 400px wide`);
}

// Every control has a name a screen reader can read.
export async function checkLabels(page, name) {
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
export async function checkContrast(page, name) {
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

