// Viewport local web UI. Plain JS, no build step. The contract is docs/WEBUI.md.
// Every piece of data (org names, paths, messages) is untrusted: the DOM is built with
// createElement/textContent only, never innerHTML.
'use strict';
(() => {
  const EXPIRED = 'Your UI session expired: run `vpd ui` or use the tray\'s Open Viewport.';
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const CSRF = csrfMeta ? csrfMeta.getAttribute('content') || '' : '';
  const main = document.getElementById('main');
  const ui = {
    state: null, json: null, route: parseRoute() || { page: 'overview' },
    drafts: {}, pending: new Set(), dismissedPairing: null, serverOpen: false,
    lastPairBody: {}, bind: null, navFocus: false, focusAfter: null, sseOk: null, poll: null, toastTimer: null,
  };
  ui.navFocus = Boolean(ui.route.suggest || ui.route.unpair || ui.route.bind);
  if (ui.route.bind) openBind(ui.route.path);

  // ---- DOM helper -------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'style' || k === 'innerHTML' || k === 'outerHTML' || k === 'srcdoc') throw new Error('h: ' + k + ' is not allowed');
      if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : String(v);
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) { if (dv != null) el.dataset[dk] = String(dv); }
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' || k === 'open') el[k] = v;
      else if (k === 'href') { const safe = safeHref(v); if (safe) el.setAttribute('href', safe); }
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children) {
      if (c == null || c === false) continue;
      if (Array.isArray(c)) append(el, c);
      else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function safeHref(v) {
    const s = String(v);
    if (s.startsWith('#') || (s.startsWith('/') && !s.startsWith('//'))) return s;
    return httpUrl(s);
  }
  function httpUrl(u) {
    try { const x = new URL(String(u)); return x.protocol === 'https:' || x.protocol === 'http:' ? x.href : null; } catch (_) { return null; }
  }
  function input(attrs) {
    const id = attrs.id;
    return h('input', Object.assign({}, attrs, { value: ui.drafts[id] || '', oninput: (e) => { ui.drafts[id] = e.target.value; } }));
  }
  const button = (text, onclick, attrs) => h('button', Object.assign({ type: 'button', onclick }, attrs || {}), text);
  const buttons = (...bs) => h('div', { class: 'buttons' }, ...bs);
  const title = (text) => h('h1', { id: 'page-title', tabindex: '-1' }, text);
  const badge = (text, cat) => h('span', { class: 'badge badge-' + cat }, text);
  const section = (id, heading, ...body) => h('section', { class: 'section', 'aria-labelledby': id }, h('h2', { id }, heading), ...body);
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const num = (n) => (typeof n === 'number' ? n : Number(n) || 0);
  function fmtTime(x) {
    if (!x) return '—';
    const d = new Date(x);
    return isNaN(d.getTime()) ? String(x) : d.toLocaleString();
  }
  const time = (x) => (x ? h('time', { datetime: String(x) }, fmtTime(x)) : '—');
  function fmtBytes(n) {
    n = num(n);
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }
  const enc = encodeURIComponent;
  const pairingHref = (id) => '#/pairing/' + enc(id);

  // ---- categories ---------------------------------------------------------------------------
  // The daemon serves what each state means (a pairing's `health`, a session's `streaming`
  // and `cut`, a pair job's `running`): no state set is copied here.
  const pairingCat = (p) => ({ connected: 'connected', degraded: 'degraded' }[p && p.health] || 'offline');
  const sessionCat = (x) => (x && x.streaming ? 'connected' : x && x.cut ? 'warning' : 'neutral');
  const dirCat = (s) => ({ bound: 'connected', changed: 'degraded', missing: 'degraded' }[s] || 'offline');
  const activityCat = (k) => ({ paired: 'connected', revoked: 'offline', refused: 'offline', unpaired: 'neutral', suggestion: 'info' }[k] || 'neutral');
  const HEALTH = { connected: 'Connected', degraded: 'Degraded', offline: 'Offline', unpaired: 'Not paired' };

  // ---- routing ------------------------------------------------------------------------------
  function parseRoute() {
    const raw = location.hash || '#/';
    if (!raw.startsWith('#/')) return null; // e.g. the skip link's #main
    const body = raw.slice(1);
    const q = body.indexOf('?');
    const path = q < 0 ? body : body.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : body.slice(q + 1));
    const parts = path.split('/').filter(Boolean);
    if (!parts.length) return { page: 'overview' };
    if (parts[0] === 'pairing' && parts.length > 1) {
      let id = parts.slice(1).join('/');
      try { id = decodeURIComponent(id); } catch (_) { /* keep raw */ }
      return { page: 'pairing', id, unpair: params.get('unpair') === '1' };
    }
    if (parts[0] === 'directories') return { page: 'directories', suggest: params.get('suggest'), bind: params.get('bind') === '1', path: params.get('path') };
    if (parts[0] === 'sessions' || parts[0] === 'activity') return { page: parts[0] };
    return { page: 'notfound' };
  }
  window.addEventListener('hashchange', () => {
    const r = parseRoute();
    if (!r) return;
    ui.route = r;
    ui.navFocus = true;
    if (r.bind) openBind(r.path);
    render();
  });
  document.getElementById('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    (document.getElementById('page-title') || main).focus();
  });

  // ---- network ------------------------------------------------------------------------------
  function showAlert(message) {
    const region = document.getElementById('alert-region');
    region.replaceChildren(h('div', { class: 'alert-box' },
      h('p', {}, message),
      button('Dismiss', clearAlert, { class: 'secondary small' })));
  }
  function clearAlert() { document.getElementById('alert-region').replaceChildren(); }
  function announce(message) {
    const region = document.getElementById('announcer');
    region.replaceChildren(h('p', { class: 'toast' }, message));
    clearTimeout(ui.toastTimer);
    ui.toastTimer = setTimeout(() => region.replaceChildren(), 6000);
  }

  // A request whose refusal the caller shows itself: { ok, status, data }.
  async function request(path, init) {
    const headers = Object.assign({ Accept: 'application/json', 'X-CSRF-Token': CSRF }, init && init.body ? { 'Content-Type': 'application/json' } : {});
    try {
      const res = await fetch(path, Object.assign({ credentials: 'same-origin', headers }, init || {}));
      let data = null;
      try { data = await res.json(); } catch (_) { data = null; }
      if (res.status === 401) showAlert(EXPIRED);
      return { ok: res.ok, status: res.status, data };
    } catch (e) {
      return { ok: false, status: 0, data: { error: { code: 'unreachable', message: 'Could not reach the daemon. Is vpd running? (' + (e && e.message ? e.message : e) + ')' } } };
    }
  }
  const errorOf = (r) => (r.data && r.data.error) || { code: 'http', message: `The daemon refused the request (HTTP ${r.status}).` };

  async function post(path, body) {
    const key = path + ' ' + JSON.stringify(body);
    if (ui.pending.has(key)) return null;
    ui.pending.add(key);
    clearAlert();
    try {
      let res;
      try {
        res = await fetch(path, {
          method: 'POST', credentials: 'same-origin', body: JSON.stringify(body || {}),
          headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': CSRF },
        });
      } catch (e) {
        showAlert('Could not reach the daemon. Is vpd running? (' + (e && e.message ? e.message : e) + ')');
        return null;
      }
      let data = null;
      try { data = await res.json(); } catch (_) { data = null; }
      if (res.status === 401) { showAlert(EXPIRED); return null; }
      if (!res.ok) {
        const msg = data && data.error && data.error.message;
        showAlert(msg ? String(msg) : `The daemon refused the request (HTTP ${res.status}).`);
        return null;
      }
      if (!ui.sseOk) refresh();
      return data || {};
    } finally {
      ui.pending.delete(key);
    }
  }

  function applyState(text) {
    if (text === ui.json) return;
    let obj;
    try { obj = JSON.parse(text); } catch (_) { return; }
    if (!obj || typeof obj !== 'object') return;
    ui.json = text;
    ui.state = obj;
    render();
  }
  async function refresh() {
    try {
      const res = await fetch('/api/state', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (res.status === 401) { showAlert(EXPIRED); return; }
      if (res.ok) applyState(await res.text());
    } catch (_) { /* the banner already says we are reconnecting */ }
  }
  function setConnected(ok) {
    if (ok === ui.sseOk) return;
    ui.sseOk = ok;
    document.getElementById('conn-banner').hidden = ok;
    if (ok) { clearInterval(ui.poll); ui.poll = null; } else if (!ui.poll) ui.poll = setInterval(refresh, 5000);
  }
  function connect() {
    if (!window.EventSource) { setConnected(false); return; }
    const es = new EventSource('/api/events');
    es.addEventListener('state', (e) => { setConnected(true); applyState(e.data); });
    es.addEventListener('open', () => setConnected(true));
    es.addEventListener('error', () => {
      setConnected(false);
      // CLOSED means the browser gave up (e.g. a 401 or a non-stream answer): retry ourselves.
      if (es.readyState === EventSource.CLOSED) { es.close(); setTimeout(connect, 5000); }
    });
  }

  // ---- rendering ----------------------------------------------------------------------------
  function keyOf(el) {
    if (!el || el === main || !main.contains(el)) return null;
    if (el.id) return '#' + el.id;
    if (el.dataset && el.dataset.key) return 'k:' + el.dataset.key;
    return null;
  }
  function findKey(key) {
    if (!key) return null;
    if (key[0] === '#') return document.getElementById(key.slice(1));
    for (const el of main.querySelectorAll('[data-key]')) if ('k:' + el.dataset.key === key) return el;
    return null;
  }

  function render() {
    const active = document.activeElement;
    const key = keyOf(active);
    const hadFocusInMain = active && active !== document.body && main.contains(active);
    let sel = null;
    try { if (active && typeof active.selectionStart === 'number') sel = [active.selectionStart, active.selectionEnd]; } catch (_) { sel = null; }
    const scrollY = window.scrollY;
    const r = ui.route;
    const pages = { overview: renderOverview, pairing: renderPairing, directories: renderDirectories, sessions: renderSessions, activity: renderActivity };
    const content = ui.state ? (pages[r.page] || renderNotFound)(ui.state, r) : [title('Viewport'), h('p', { class: 'muted' }, 'Loading…')];
    main.replaceChildren(...content.filter(Boolean));
    updateChrome();
    if (ui.navFocus && ui.state) { ui.navFocus = false; focusAfterNav(r); return; }
    if (ui.focusAfter) {
      const el = findKey(ui.focusAfter);
      ui.focusAfter = null;
      if (el) { el.focus(); return; }
    }
    if (window.scrollY !== scrollY) window.scrollTo(0, scrollY);
    const el = findKey(key);
    if (el && !el.disabled) {
      el.focus({ preventScroll: true });
      if (sel) { try { el.setSelectionRange(sel[0], sel[1]); } catch (_) { /* not a text input */ } }
    } else if (hadFocusInMain) {
      main.focus({ preventScroll: true });
    }
  }
  function focusAfterNav(r) {
    // The tray's "Unpair…" lands here: ask at once (the dialog is the confirmation).
    if (r.page === 'pairing' && r.unpair) {
      r.unpair = false;
      // Asked once: a reload or Back must not ask again.
      history.replaceState(null, '', '#/pairing/' + encodeURIComponent(r.id));
      const p = ((ui.state.status || {}).pairings || []).find((x) => x.pairingId === r.id || x.workspaceId === r.id);
      if (p) { confirmUnpair(p, p.workspaceName || p.workspaceSlug || p.workspaceId); return; }
    }
    if (r.bind) {
      r.bind = false;
      // Opened once: a reload or Back must not open it again (the path stays in the field).
      history.replaceState(null, '', '#/directories');
      const field = document.getElementById('bind-path');
      if (field) { field.focus(); return; }
    }
    if (r.suggest) {
      const item = [...main.querySelectorAll('[data-directory]')].find((el) => el.dataset.directory === r.suggest || el.dataset.display === r.suggest);
      if (item) {
        item.scrollIntoView({ block: 'center' });
        const first = item.querySelector('button');
        (first || item).focus({ preventScroll: true });
        return;
      }
    }
    const t = document.getElementById('page-title');
    if (t) t.focus(); else main.focus();
  }
  function updateChrome() {
    const page = ui.route.page === 'pairing' ? 'overview' : ui.route.page;
    for (const a of document.querySelectorAll('.site-nav a[data-route]')) {
      if (a.dataset.route === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const health = ui.state && ui.state.health ? String(ui.state.health) : 'unknown';
    const label = HEALTH[health] || (ui.state ? health : 'loading');
    const badgeEl = document.getElementById('health-badge');
    const cat = HEALTH[health] ? health : 'unknown';
    if (badgeEl.className !== 'badge badge-' + cat) badgeEl.className = 'badge badge-' + cat;
    const text = document.getElementById('health-text');
    if (text.textContent !== label) text.textContent = label;
    const t = document.getElementById('page-title');
    document.title = (t && t.textContent && t.textContent !== 'Viewport' ? t.textContent + ' — ' : '') + 'Viewport';
  }

  function table(labelledBy, cols, rows) {
    return h('table', { class: 'stack', 'aria-labelledby': labelledBy },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c, i) => h('td', { 'data-label': cols[i] }, c))))));
  }
  function dl(rows) {
    return h('dl', { class: 'details' }, rows.map(([term, value]) => h('div', { class: 'dl-row' }, h('dt', {}, term), h('dd', {}, value))));
  }

  // ---- pairing (shared by Overview and Directories) -------------------------------------------
  const pairingRunning = (p) => Boolean(p && p.running);
  async function startPair(extra) {
    const body = Object.assign({}, extra || {});
    const server = (ui.drafts['pair-server'] || '').trim();
    if (server) body.server = server;
    const name = (ui.drafts['pair-name'] || '').trim();
    if (name) body.name = name;
    ui.lastPairBody = body;
    ui.dismissedPairing = null;
    const res = await post('/api/pair', body);
    if (!res) return;
    // The state itself comes only from the event stream (the daemon sends it at once): an
    // answer applied here could arrive after a newer event and stick.
    ui.focusAfter = '#pairing-panel';
    render();
  }
  function pairControls(p, host) {
    // The host name, prefilled: edit it to show the org another name.
    if (ui.drafts['pair-name'] == null && host) ui.drafts['pair-name'] = String(host);
    return h('div', { class: 'pair-controls' },
      button('Pair with workspace…', () => startPair({}), { id: 'pair-button', class: 'primary', disabled: pairingRunning(p) }),
      h('details', { class: 'server-disclosure', open: ui.serverOpen, ontoggle: (e) => { ui.serverOpen = e.currentTarget.open; } },
        h('summary', { dataset: { key: 'pair-server-summary' } }, 'Server URL and machine name'),
        h('div', { class: 'field' },
          h('label', { for: 'pair-server' }, 'Platform URL (optional)'),
          input({ id: 'pair-server', type: 'text', inputmode: 'url', autocomplete: 'url', spellcheck: 'false', placeholder: 'https://viewport.example.com' })),
        h('div', { class: 'field' },
          h('label', { for: 'pair-name' }, 'Machine name the org sees'),
          input({ id: 'pair-name', type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: '100', placeholder: host || 'this machine' }))));
  }
  function renameForm(p, name) {
    const id = 'rename-' + (p.pairingId || p.workspaceId);
    const save = async (e) => {
      e.preventDefault();
      const value = (ui.drafts[id] != null ? ui.drafts[id] : String(p.machineName || '')).trim();
      if (!value) { showAlert('Type the name ' + name + ' should show for this machine.'); document.getElementById(id).focus(); return; }
      const res = await post('/api/rename', { org: p.pairingId || p.workspaceId, name: value });
      if (res) { ui.drafts[id] = String(res.name); announce(`This machine is now "${res.name}" in ${name}.`); render(); }
    };
    if (ui.drafts[id] == null) ui.drafts[id] = String(p.machineName || '');
    return h('form', { class: 'rename-form', onsubmit: save },
      h('label', { for: id, class: 'sr-only' }, 'Machine name in ' + name),
      h('div', { class: 'input-row' },
        input({ id, type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: '100' }),
        h('button', { type: 'submit', class: 'secondary', dataset: { key: 'rename-save' } }, 'Rename')));
  }
  function pairingPanel(p) {
    if (!p || ui.dismissedPairing === JSON.stringify(p)) return null;
    const dismiss = () => button('Dismiss', () => { ui.dismissedPairing = JSON.stringify(p); render(); }, { class: 'secondary', dataset: { key: 'pairing-dismiss' } });
    const body = [];
    switch (p.state) {
      case 'starting':
        body.push(h('p', {}, 'Asking the platform for a code…'));
        break;
      case 'waiting': {
        const href = httpUrl(p.url);
        body.push(
          h('p', {}, 'Open the link below, sign in, and check the platform shows this code:'),
          h('p', { id: 'pairing-code', class: 'pairing-code' }, p.code || ''),
          h('p', { class: 'wrap' }, 'Approval link: ', href
            ? h('a', { id: 'pairing-link', href, target: '_blank', rel: 'noopener noreferrer' }, String(p.url))
            : h('span', { id: 'pairing-link' }, String(p.url || ''))),
          p.fingerprint ? h('p', { class: 'wrap' }, 'Machine key fingerprint: ', h('code', {}, String(p.fingerprint))) : null,
          p.expiresAt ? h('p', {}, 'Expires at ', time(p.expiresAt)) : null,
          buttons(button('Cancel', () => post('/api/pair/cancel', {}), { dataset: { key: 'pairing-cancel' } })));
        break;
      }
      case 'confirm_replace':
        body.push(h('p', {}, `Approved for ${p.workspaceName || 'a workspace'}, which this machine is already paired with. Replace that pairing?`),
          buttons(button('Replace', () => post('/api/pair/confirm', { replace: true }), { class: 'danger', dataset: { key: 'pairing-replace' } }),
            button('Keep', () => post('/api/pair/confirm', { replace: false }), { dataset: { key: 'pairing-keep' } })));
        break;
      case 'done': {
        const org = p.workspaceName || 'the workspace';
        body.push(h('p', { class: 'ok' }, `Paired with ${org}.`));
        const n = num(p.waitingBindings);
        if (n > 0) {
          // SPEC A3: the bindings kept from an earlier pairing stream again only after a yes.
          body.push(h('p', { id: 'resume-question' }, `Resume ${n} directory binding${n === 1 ? '' : 's'} of ${org}?`),
            h('p', { class: 'muted' }, 'Until you do, nothing streams from them. Only sessions started from now on stream; earlier ones stay cut.'),
            buttons(button('Resume', async () => {
              const res = await post('/api/bindings/resume', { pairingId: p.pairingId });
              if (res) announce(`Resumed ${plural((res.resumed || []).length, 'directory binding')} of ${org}.`);
            }, { class: 'primary', 'aria-describedby': 'resume-question', dataset: { key: 'resume-bindings' } }),
            button('Not now', () => { ui.dismissedPairing = JSON.stringify(p); render(); }, { class: 'secondary', dataset: { key: 'resume-not-now' } })));
        } else {
          if (p.resumedBindings != null) body.push(h('p', {}, `Resumed ${plural(num(p.resumedBindings), 'directory binding')}: new sessions there stream.`));
          body.push(buttons(dismiss()));
        }
        break;
      }
      case 'failed':
        body.push(h('p', { class: 'warning' }, 'Pairing failed: ' + String(p.error || 'unknown error')),
          buttons(button('Try again', () => startPair(ui.lastPairBody), { class: 'primary', dataset: { key: 'pairing-retry' } }), dismiss()));
        break;
      case 'cancelled':
        body.push(h('p', {}, 'Pairing cancelled.'), buttons(dismiss()));
        break;
      default:
        body.push(h('p', {}, 'Pairing: ' + String(p.state || 'unknown')));
    }
    return h('section', { id: 'pairing-panel', class: 'panel pairing-panel', tabindex: '-1', 'aria-labelledby': 'pairing-panel-h' },
      h('h3', { id: 'pairing-panel-h' }, 'Pairing'), ...body);
  }

  // ---- pages --------------------------------------------------------------------------------
  function renderOverview(s) {
    const st = s.status || {};
    const d = st.daemon || {};
    const pairings = st.pairings || [];
    const problems = st.problems || [];
    const suggestions = s.suggestions || [];
    const streaming = (s.sessions || []).filter((x) => x.streaming && !x.endedAt).length;
    const daemonBits = [
      'Machine ' + (d.machineName || 'unknown'),
      'vpd ' + (d.version || '?'),
      d.running === false ? 'not running' : 'running' + (d.pid != null ? ` (pid ${d.pid})` : ''),
      'credentials in ' + (d.credentialStore || 'unknown'),
    ];
    return [
      title('Overview'),
      section('daemon-h', 'Daemon',
        h('p', { class: 'daemon-line' }, daemonBits.join(' · ')),
        d.keyringError ? h('p', { class: 'warning' }, 'Keyring error: ' + String(d.keyringError)) : null),
      problems.length ? section('problems-h', 'Problems', h('ul', { class: 'warnings' }, problems.map((p) => h('li', { class: 'warning' }, String(p))))) : null,
      section('summary-h', 'At a glance', h('ul', { class: 'summary' },
        h('li', {}, plural(suggestions.length, 'suggestion') + ' pending — ', h('a', { href: '#/directories' }, 'review in Directories')),
        h('li', {}, plural(streaming, 'session') + ' streaming — ', h('a', { href: '#/sessions' }, 'see Sessions')))),
      section('pairings-h', 'Pairings',
        pairControls(s.pairing, d.machineName),
        pairingPanel(s.pairing),
        pairings.length
          ? h('ul', { class: 'cards' }, pairings.map((p) => h('li', { class: 'card' },
            h('h3', {}, h('a', { href: pairingHref(p.pairingId || p.workspaceId), dataset: { key: 'pairing:' + (p.pairingId || p.workspaceId) } }, p.workspaceName || p.workspaceSlug || p.workspaceId)),
            h('p', { class: 'card-line' }, badge(String(p.state || 'unknown'), pairingCat(p)), ' ', plural(num(p.sessionsStreaming), 'session') + ' streaming'),
            h('p', { class: 'muted wrap' }, 'Relay: ', String(p.relayEndpoint || '—')))))
          : h('p', { class: 'empty' }, 'This machine is not paired with any workspace yet.')),
    ];
  }

  function renderPairing(s, r) {
    const p = ((s.status || {}).pairings || []).find((x) => x.pairingId === r.id || x.workspaceId === r.id);
    if (!p) return [title('Pairing'), h('p', {}, 'This pairing no longer exists.'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview'))];
    const name = p.workspaceName || p.workspaceSlug || p.workspaceId;
    const sessions = (s.sessions || []).filter((x) => (x.pairingId ? x.pairingId === p.pairingId : x.orgId === p.workspaceId));
    const lastError = p.lastError || p.lastErrorCode ? [p.lastErrorCode ? h('code', {}, String(p.lastErrorCode)) : null, p.lastErrorCode && p.lastError ? ': ' : '', p.lastError ? String(p.lastError) : ''] : 'none';
    return [
      title(name),
      h('p', {}, h('a', { href: '#/' }, '← Overview')),
      dl([
        ['Organization', [String(p.workspaceName || ''), p.workspaceSlug ? ` (${p.workspaceSlug})` : '', ' · ', h('code', {}, String(p.workspaceId))]],
        ['Platform', String(p.serverUrl || '—')],
        ['Relay', String(p.relayEndpoint || '—')],
        ['State', badge(String(p.state || 'unknown'), pairingCat(p))],
        ['Last error', lastError],
        ['Connected since', time(p.connectedSince)],
        ['Next retry', time(p.nextRetryAt)],
        ['Machine id', h('code', {}, String(p.machineId || '—'))],
        ['Machine name', renameForm(p, name)],
        ['Paired at', time(p.pairedAt)],
        ['Credential store', String(p.credentialStore || '—')],
        ['Frames sent / acked', `${num(p.framesSent)} / ${num(p.framesAcked)}`],
        ['Queued bytes', fmtBytes(p.queuedBytes)],
      ]),
      buttons(
        button('Reconnect now', async () => { const res = await post('/api/reconnect', { org: p.pairingId || p.workspaceId }); if (res) announce('Reconnecting to ' + name + '…'); }, { dataset: { key: 'reconnect' } }),
        button('Unpair', () => confirmUnpair(p, name), { id: 'unpair-button', class: 'danger' })),
      section('pairing-sessions-h', 'Sessions',
        sessions.length ? sessionsTable(sessions, 'pairing-sessions-h') : h('p', { class: 'empty' }, 'No sessions for this organization.')),
    ];
  }

  let dialog = null;
  function confirmUnpair(p, name) {
    const text = `Unpair ${name}? Sessions streaming to it stop, and the platform is told to revoke this machine. Directories bound to it keep their bindings, inert, until you pair with ${name} again and choose to resume them.`;
    const run = async () => {
      const forget = document.getElementById('unpair-forget');
      const res = await post('/api/unpair', { org: p.pairingId || p.workspaceId, forgetBindings: Boolean(forget && forget.checked) });
      if (res) { announce('Unpaired ' + name + '.'); location.hash = '#/'; }
    };
    if (typeof HTMLDialogElement !== 'function' || !HTMLDialogElement.prototype.showModal) {
      if (window.confirm(text)) run();
      return;
    }
    if (!dialog) {
      dialog = h('dialog', { id: 'unpair-dialog', class: 'dialog', 'aria-labelledby': 'unpair-dialog-h', 'aria-describedby': 'unpair-dialog-text' },
        h('h2', { id: 'unpair-dialog-h' }, 'Unpair workspace'),
        h('p', { id: 'unpair-dialog-text' }),
        h('p', {}, h('label', {}, h('input', { type: 'checkbox', id: 'unpair-forget' }), ' Also remove its directory bindings')),
        buttons(button('Unpair', () => { dialog.close(); if (dialog.onConfirm) dialog.onConfirm(); }, { id: 'unpair-confirm', class: 'danger' }),
          button('Cancel', () => dialog.close(), { id: 'unpair-cancel', class: 'secondary' })));
      document.body.append(dialog);
    }
    document.getElementById('unpair-dialog-text').textContent = text;
    document.getElementById('unpair-forget').checked = false;
    dialog.onConfirm = run;
    dialog.showModal();
    document.getElementById('unpair-cancel').focus();
  }

  // ---- Bind a folder… (docs/WEBUI.md) -------------------------------------------------------
  // In the Viewport window a native folder picker fills the path (the window answers a visit
  // to /pick-folder itself, and comes back to #/directories?bind=1&path=…); in a browser the
  // path field completes from the daemon, directories only.
  const inWindow = /\bViewportWindow\//.test(navigator.userAgent);
  function openBind(path) {
    if (!ui.bind) ui.bind = { completions: [], preview: null, previewError: null, recursive: null, org: null, result: null, timer: null, seq: 0 };
    ui.bind.result = null;
    if (path) { ui.drafts['bind-path'] = path; previewBind(); }
  }
  function closeBind() { ui.bind = null; ui.focusAfter = '#bind-open'; render(); }
  function bindPathChanged(value) {
    ui.drafts['bind-path'] = value;
    const b = ui.bind;
    if (!b) return;
    b.result = null;
    clearTimeout(b.timer);
    b.timer = setTimeout(() => completeBind(value), 150);
  }
  // A folder is looked at once the path names one the completion listed (or the person
  // leaves the field): half-typed names are not sent as bindings to preview.
  const sameDir = (a, b) => a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
  async function completeBind(value) {
    const b = ui.bind;
    const r = await request('/api/folders/complete?path=' + enc(value));
    if (!r.ok || ui.bind !== b || ui.drafts['bind-path'] !== value) return;
    const known = b.completions.concat((r.data && r.data.completions) || []);
    b.completions = (r.data && r.data.completions) || [];
    const list = document.getElementById('bind-completions');
    if (list) list.replaceChildren(...completionOptions(b.completions));
    if (known.some((c) => sameDir(c.value, value))) previewBind();
  }
  const completionOptions = (list) => list.map((c) => h('option', { value: c.value }, c.repository ? 'repository' : null));
  async function previewBind() {
    const b = ui.bind;
    const path = (ui.drafts['bind-path'] || '').trim();
    if (!b) return;
    const seq = ++b.seq;
    if (!path) { b.preview = null; b.previewError = null; render(); return; }
    const r = await request('/api/folders/preview', { method: 'POST', body: JSON.stringify({ directory: path }) });
    if (ui.bind !== b || seq !== b.seq) return;
    b.preview = r.ok ? r.data : null;
    b.previewError = r.ok ? null : errorOf(r).message;
    render();
  }
  async function submitBind(e, pairings) {
    e.preventDefault();
    const b = ui.bind;
    const path = (ui.drafts['bind-path'] || '').trim();
    if (!path) { showAlert('Type the folder to bind, for example ~/code.'); document.getElementById('bind-path').focus(); return; }
    const pv = b.preview;
    const recursive = b.recursive != null ? b.recursive : Boolean(pv && pv.recommendRecursive);
    const org = b.org || (pairings.length === 1 ? pairings[0].pairingId : '');
    if (!org) { showAlert('Choose the organization to bind the folder to.'); document.getElementById('bind-org').focus(); return; }
    const send = (replace) => request('/api/bind', { method: 'POST', body: JSON.stringify({ directory: path, org, recursive, replace }) });
    clearAlert();
    let r = await send(false);
    if (!r.ok && errorOf(r).code === 'binding_exists') {
      if (!window.confirm(errorOf(r).message.replace(/ Pass --yes to bind it to (.*) instead\.$/, ' Replace it with $1?'))) return;
      r = await send(true);
    }
    if (!r.ok) { showAlert(errorOf(r).message); return; }
    if (ui.bind !== b) return;
    // A preview still on its way (the field's change event as Bind was clicked) describes
    // a folder no longer in the form: it must not land.
    b.seq++;
    clearTimeout(b.timer);
    b.result = r.data;
    b.preview = null;
    b.previewError = null;
    b.recursive = null;
    b.completions = [];
    ui.drafts['bind-path'] = '';
    ui.focusAfter = '#bind-result';
    announce(r.data.summary || 'Bound.');
    render();
  }
  function bindPanel(s) {
    const b = ui.bind;
    if (!b) return null;
    const pairings = (s.status || {}).pairings || [];
    const pv = b.preview;
    const recursive = b.recursive != null ? b.recursive : Boolean(pv && pv.recommendRecursive);
    const orgField = pairings.length
      ? h('div', { class: 'field' },
        h('label', { for: 'bind-org' }, 'Organization'),
        h('select', { id: 'bind-org', onchange: (e) => { b.org = e.target.value; } },
          pairings.length > 1 && !b.org ? h('option', { value: '' }, 'Choose…') : null,
          pairings.map((p) => {
            const o = h('option', { value: p.pairingId }, `${p.workspaceName || p.workspaceSlug} on ${p.serverUrl || ''}`);
            if ((b.org || (pairings.length === 1 ? p.pairingId : '')) === p.pairingId) o.selected = true;
            return o;
          })))
      : h('p', { class: 'warning' }, 'This machine is not paired with any workspace: pair on the Overview first.');
    return h('section', { id: 'bind-panel', class: 'panel', 'aria-labelledby': 'bind-panel-h' },
      h('h3', { id: 'bind-panel-h' }, 'Bind a folder'),
      b.result ? h('div', { id: 'bind-result', class: 'bind-result', tabindex: '-1' },
        h('p', { class: 'ok' }, String(b.result.summary || 'Bound.')),
        (b.result.warnings || []).map((w) => h('p', { class: 'warning' }, String(w)))) : null,
      h('form', { id: 'bind-form', onsubmit: (e) => submitBind(e, pairings) },
        h('div', { class: 'field' },
          h('label', { for: 'bind-path' }, 'Folder, e.g. ~/code'),
          h('div', { class: 'input-row' },
            h('input', { id: 'bind-path', type: 'text', list: 'bind-completions', autocomplete: 'off', spellcheck: 'false', placeholder: '~/code',
              value: ui.drafts['bind-path'] || '', 'aria-describedby': 'bind-explain', oninput: (e) => bindPathChanged(e.target.value), onchange: () => previewBind() }),
            inWindow ? button('Choose…', () => { location.href = '/pick-folder'; }, { class: 'secondary', dataset: { key: 'bind-choose' } }) : null),
          h('datalist', { id: 'bind-completions' }, completionOptions(b.completions))),
        h('p', { id: 'bind-explain', class: pv ? '' : b.previewError ? 'warning' : 'muted' },
          pv ? [String(pv.explanation), pv.boundTo ? ` It is bound to ${pv.boundTo} now.` : '']
            : b.previewError ? String(b.previewError) : 'Sessions started in the folder you bind stream to the organization you choose.'),
        orgField,
        h('p', {}, h('label', {},
          h('input', { type: 'checkbox', id: 'bind-recursive', checked: recursive, onchange: (e) => { b.recursive = e.target.checked; render(); } }),
          ' Include every repository below',
          pv && !pv.insideRepository ? h('span', { class: 'muted' }, num(pv.repositoriesBelow) === 1 ? ' (1 repository today)' : ` (${num(pv.repositoriesBelow)} repositories today)`) : null)),
        buttons(
          h('button', { type: 'submit', class: 'primary', disabled: !pairings.length, dataset: { key: 'bind-submit' } }, 'Bind'),
          button(b.result ? 'Close' : 'Cancel', closeBind, { class: 'secondary', dataset: { key: 'bind-cancel' } }))));
  }

  function renderDirectories(s, r) {
    const dirs = (s.status || {}).directories || [];
    const suggestions = s.suggestions || [];
    const watched = s.watched || [];
    const declines = s.declines || [];
    const addWatched = async (e) => {
      e.preventDefault();
      const path = (ui.drafts['watch-path'] || '').trim();
      if (!path) { showAlert('Type a folder to watch, e.g. ~/code.'); document.getElementById('watch-path').focus(); return; }
      const res = await post('/api/watched', { path });
      if (res) { ui.drafts['watch-path'] = ''; ui.focusAfter = '#watch-path'; render(); announce('Watching ' + path + '.'); }
    };
    return [
      title('Directories'),
      ui.bind ? null : buttons(button('Bind a folder…', () => { openBind(); ui.focusAfter = '#bind-path'; render(); }, { id: 'bind-open', class: 'primary' })),
      bindPanel(s),
      section('bound-h', 'Bound directories', dirs.length
        ? table('bound-h', ['Directory', 'Organization', 'State', 'Actions'], dirs.map((d, i) => [
          h('span', { id: 'dir-' + i, class: 'path', title: String(d.directory || '') }, String(d.display || d.directory), d.recursive ? h('span', { class: 'muted' }, ' (and subfolders)') : null),
          [String(d.orgName || d.orgId || '—'), d.state === 'waiting' && d.server ? h('span', { class: 'muted block' }, 'waits for a pairing on ' + d.server) : null],
          badge(String(d.state || 'unknown').replace(/_/g, ' '), dirCat(d.state)),
          [d.state === 'waiting' && d.pairingId
            // SPEC A3: its org is paired again; resuming is the person's yes.
            ? button('Resume', async () => { if (await post('/api/bindings/resume', { pairingId: d.pairingId })) announce('Resumed the bindings of ' + (d.orgName || d.orgId) + '.'); },
              { class: 'primary', 'aria-describedby': 'dir-' + i, dataset: { key: 'resume:' + d.directory } })
            : null,
          ' ',
          button('Unbind', async () => { if (await post('/api/unbind', { directory: d.directory })) announce('Unbound ' + (d.display || d.directory) + '.'); },
            { class: 'secondary', 'aria-describedby': 'dir-' + i, dataset: { key: 'unbind:' + d.directory } })],
        ]))
        : h('p', { class: 'empty' }, 'No directories are bound yet. Use Bind a folder…, or accept a suggestion below.')),
      section('suggestions-h', 'Suggestions',
        pairingPanel(s.pairing),
        suggestions.length
          ? h('ul', { class: 'cards' }, suggestions.map((sg, i) => suggestionItem(sg, i, r, s.pairing)))
          : h('p', { class: 'empty' }, 'No suggestions right now.')),
      section('declines-h', 'Never suggested',
        declines.length
          ? [h('p', { class: 'muted' }, 'You said Never to these, in a notification, here or in the terminal. Undo lets Viewport ask again.'),
            h('ul', { class: 'cards' }, declines.map((d, i) => h('li', { class: 'card row-card' },
              h('div', {},
                h('p', { id: 'decline-' + i, class: 'path', title: String(d.directory || '') }, String(d.display || d.directory)),
                h('p', { class: 'muted' }, (d.question === 'trust' ? 'Trust a binding to ' : 'Bind to ') + String(d.orgName || d.orgId), ' · ', time(d.declinedAt))),
              button('Undo', async () => {
                if (await post('/api/declines/undo', { directory: d.directory, orgId: d.orgId })) announce('Viewport may ask again about ' + (d.display || d.directory) + '.');
              }, { class: 'secondary', 'aria-describedby': 'decline-' + i, dataset: { key: 'undo:' + d.directory + ':' + d.orgId } }))))]
          : h('p', { class: 'empty' }, 'Nothing. A Never, anywhere, is listed here with Undo.')),
      section('watched-h', 'Watched folders',
        h('p', {}, 'Viewport looks in these folders for repositories with .viewport/workspace.yaml and suggests binding them. Nothing leaves this machine.'),
        watched.length
          ? h('ul', { class: 'cards' }, watched.map((w, i) => h('li', { class: 'card row-card' },
            h('div', {},
              h('p', { id: 'watched-' + i, class: 'path', title: String(w.path || '') }, String(w.display || w.path)),
              h('p', { class: 'muted' }, num(w.repositories) === 1 ? '1 repository' : num(w.repositories) + ' repositories'),
              w.error ? h('p', { class: 'warning' }, String(w.error)) : null),
            button('Remove', async () => { if (await post('/api/watched/remove', { path: w.path })) announce('Stopped watching ' + (w.display || w.path) + '.'); },
              { class: 'secondary', 'aria-describedby': 'watched-' + i, dataset: { key: 'remove:' + w.path } }))))
          : h('p', { class: 'empty' }, 'No folders are watched.'),
        h('form', { class: 'watch-form', onsubmit: addWatched },
          h('label', { for: 'watch-path' }, 'Folder to watch, e.g. ~/code'),
          h('div', { class: 'input-row' },
            input({ id: 'watch-path', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '~/code' }),
            h('button', { type: 'submit', class: 'primary', dataset: { key: 'watch-add' } }, 'Add')))),
    ];
  }

  function suggestionItem(sg, i, r, pairing) {
    const body = { directory: sg.directory, orgId: sg.orgId, kind: sg.kind };
    const k = sg.kind + ':' + sg.directory + ':' + sg.orgId;
    const label = 'sug-' + i;
    const where = sg.display || sg.directory;
    const act = (text, path, done, cls) => button(text, async () => { if (await post(path, body)) announce(done); },
      { class: cls || 'secondary', 'aria-describedby': label, dataset: { key: text + ':' + k } });
    const notNow = act('Not now', '/api/suggestions/dismiss', 'Hidden until the daemon restarts: ' + where + '.');
    const never = act('Never', '/api/suggestions/decline', 'Viewport will not suggest this again for ' + where + '.');
    const source = { session: 'a session started there', shell: 'your shell', watched: 'a watched folder' }[sg.source] || String(sg.source || 'unknown');
    let text;
    let actions;
    if (sg.kind === 'trust') {
      text = [`suggests ${sg.orgName}. `, h('code', {}, '.viewport/local.yaml'), ' was not made on this machine'];
      actions = [act('Trust', '/api/suggestions/bind', 'Trusted ' + where + '.', 'primary'), notNow, never];
    } else if (sg.kind === 'pair') {
      text = `This repo suggests org ${sg.orgName}, but you're not paired to it.`;
      actions = [button('Pair with workspace…', () => startPair({ org: sg.orgId }),
        { class: 'primary', disabled: pairingRunning(pairing), 'aria-describedby': label, dataset: { key: 'pair:' + k } }), notNow, never];
    } else {
      // SPEC A1: the question names the server the sessions would stream to.
      text = sg.server ? `suggests ${sg.orgName} on ${sg.server}` : `suggests ${sg.orgName}`;
      actions = [act('Bind', '/api/suggestions/bind', 'Bound ' + where + ' to ' + sg.orgName + '.', 'primary'), notNow, never];
    }
    const target = r.suggest != null && (r.suggest === sg.directory || r.suggest === sg.display);
    return h('li', { class: ['card', 'suggestion', target && 'highlight'], dataset: { directory: sg.directory, display: sg.display } },
      h('p', { id: label, class: 'path' }, String(where)),
      h('p', {}, text),
      h('p', { class: 'muted' }, 'Found via ' + source, sg.at ? [' · ', time(sg.at)] : null),
      buttons(...actions));
  }

  function sessionsTable(list, labelledBy) {
    const t = (x) => Date.parse(x) || 0;
    const sorted = [...list].sort((a, b) => (a.endedAt ? 1 : 0) - (b.endedAt ? 1 : 0) || t(b.startedAt) - t(a.startedAt));
    return table(labelledBy, ['Session', 'Directory', 'Organization', 'State', 'Started', 'Frames'], sorted.map((x) => [
      [String(x.name || x.agent || x.sessionId || 'session'), x.name && x.agent ? h('span', { class: 'muted' }, ' (' + x.agent + ')') : null],
      h('span', { class: 'path' }, String(x.directory || x.cwd || '—')),
      String(x.orgName || 'local only'),
      [badge(String(x.state || 'unknown'), sessionCat(x)),
        x.localReason ? h('span', { class: 'muted block' }, String(x.localReason)) : null,
        x.endedAt ? h('span', { class: 'muted block' }, x.state === 'ended' ? 'at ' : 'ended ', time(x.endedAt), x.exitCode != null ? ` (exit ${x.exitCode})` : '') : null],
      time(x.startedAt),
      String(num(x.frames)),
    ]));
  }

  function renderSessions(s) {
    const list = s.sessions || [];
    const running = list.filter((x) => !x.endedAt).length;
    return [
      title('Sessions'),
      h('p', { class: 'muted' }, `${running} running, ${list.length - running} ended. Running sessions are listed first.`),
      section('sessions-h', 'All sessions',
        list.length ? sessionsTable(list, 'sessions-h')
          : h('p', { class: 'empty' }, 'No sessions yet. Start an agent with `vpd run -- <command>` in a bound directory.')),
    ];
  }

  function renderActivity(s) {
    const items = ((s.status || {}).activity || []).map((a, i) => ({ a, i }));
    items.sort((x, y) => (typeof x.a.id === 'number' && typeof y.a.id === 'number' ? y.a.id - x.a.id : y.i - x.i));
    return [
      title('Activity'),
      items.length
        ? h('ol', { class: 'activity' }, items.map(({ a }) => h('li', { class: 'activity-item' },
          h('span', { class: 'activity-time' }, time(a.at)),
          badge(String(a.kind || 'event'), activityCat(a.kind)),
          h('span', { class: 'activity-message' }, String(a.message || '')))))
        : h('p', { class: 'empty' }, 'Nothing has happened yet.'),
    ];
  }

  function renderNotFound() {
    return [title('Page not found'), h('p', {}, h('a', { href: '#/' }, 'Go to the overview'))];
  }

  // ---- start --------------------------------------------------------------------------------
  render();
  // The event stream sends the whole state at once; fetching it as well could let an older
  // answer overwrite a newer event. /api/state is only the fallback while the stream is down.
  connect();
})();
