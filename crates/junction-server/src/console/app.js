// The console's pages and navigation. Pages are addressed by the URL's hash
// (#/connectors/NAME/OPERATION, #/views, #/connections, #/triggers, #/stats,
// #/diagnostics), so the
// browser's back button and links work without a server-side router.

import { api, ApiError, seg, storedToken, storeToken } from './api.js';
import { announce, fill, h } from './dom.js';
import { connectionForm, operationForm, resultView } from './forms.js';
import { latencyChart, requestsChart, viewGraph } from './charts.js';

const page = document.getElementById('page');
const nav = document.getElementById('nav');
const signIn = document.getElementById('sign-in');
const signOut = document.getElementById('sign-out');

/** How often the statistics page refreshes. */
const STATS_EVERY_MS = 3000;

/** Cleanup of the page shown (the statistics timer). */
let leave = () => {};
/** What the gateway offers, learnt once signed in. */
const gateway = { connectors: [], store: false, tokenNeeded: false };

// ------------------------------------------------------------------ signing in

/** Starts the console: signs in first when the admin API asks for a token. */
async function start() {
  try {
    gateway.connectors = (await api('/connectors')).connectors;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      const had = storedToken();
      storeToken(null);
      showSignIn(had ? 'The saved token was refused; sign in again.' : '');
      return;
    }
    fill(page, notice(`The admin API cannot be reached: ${describe(error)}`, 'bad'));
    return;
  }
  gateway.tokenNeeded = Boolean(storedToken());
  gateway.store = await api('/connections').then(() => true, () => false);
  signIn.hidden = true;
  nav.hidden = false;
  signOut.hidden = !gateway.tokenNeeded;
  route();
}

function showSignIn(message) {
  nav.hidden = true;
  signOut.hidden = true;
  page.replaceChildren();
  signIn.hidden = false;
  document.getElementById('sign-in-error').textContent = message;
  document.getElementById('token').focus();
}

document.getElementById('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const field = document.getElementById('token');
  const error = document.getElementById('sign-in-error');
  const token = field.value.trim();
  error.textContent = '';
  try {
    // Check the token before keeping it.
    await api('/connectors', { token });
  } catch (e) {
    field.setAttribute('aria-invalid', 'true');
    error.textContent = e instanceof ApiError && e.status === 401
      ? 'This token was refused.' : `Sign-in failed: ${describe(e)}`;
    field.select();
    return;
  }
  field.removeAttribute('aria-invalid');
  field.value = '';
  storeToken(token);
  await start();
  document.getElementById('main').focus();
});

signOut.addEventListener('click', () => {
  storeToken(null);
  leave();
  showSignIn('Signed out.');
});

// ------------------------------------------------------------------ routing

function route() {
  if (signIn.hidden === false) return;
  leave();
  leave = () => {};
  const [section = 'connectors', ...rest] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const pages = { connectors, views, connections, triggers, stats, diagnostics };
  const show = pages[section] ?? connectors;
  show(...rest).catch((error) => {
    if (error instanceof ApiError && error.status === 401) {
      storeToken(null);
      showSignIn('The token is no longer accepted; sign in again.');
      return;
    }
    fill(page, notice(describe(error), 'bad'));
  });
}

// The skip link moves focus without touching the hash, which addresses pages.
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});

window.addEventListener('hashchange', () => {
  route();
  // Move focus to the new content, as a page load would.
  document.getElementById('main').focus();
});

// ------------------------------------------------------------------ connectors

async function connectors(name, operation) {
  const list = h('nav', { class: 'side panel', 'aria-label': 'Connectors and operations' },
    gateway.connectors.length ? h('ul', {}, gateway.connectors.map((c) => h('li', {},
      h('p', { class: 'connector-title' }, c.title, ' ', h('span', { class: 'muted mono' }, c.name)),
      c.description ? h('p', { class: 'hint' }, firstLine(c.description)) : null,
      h('ul', { class: 'ops' }, c.operations.map((op) => h('li', {},
        h('a', {
          href: `#/connectors/${seg(c.name)}/${seg(op.id)}`,
          'aria-current': c.name === name && op.id === operation ? 'true' : null,
          'data-operation': `${c.name}.${op.id}`,
        }, h('span', { class: `method ${op.method.toLowerCase()}` }, op.method), h('span', {}, op.summary || op.id))))))))
      : h('p', {}, 'No connector is loaded.'));
  const detail = h('div', { class: 'detail' });
  fill(page, h('div', { class: 'split' }, list, detail));
  if (!name) {
    fill(detail, h('div', { class: 'panel' },
      h('h1', {}, 'Connectors'),
      h('p', {}, `${gateway.connectors.length} connectors with ${gateway.connectors.reduce((n, c) => n + c.operations.length, 0)} operations are served.`),
      h('p', {}, 'Choose an operation to read its definition and try it.')));
    return;
  }
  const connector = gateway.connectors.find((c) => c.name === name);
  if (!connector) {
    fill(detail, notice(`There is no connector named “${name}”.`, 'bad'));
    return;
  }
  if (!operation) {
    fill(detail, h('div', { class: 'panel' },
      h('h1', {}, connector.title),
      connector.description ? paragraphs(connector.description) : null,
      h('p', { class: 'muted' }, `Served at /connectors/${connector.name}/…, version ${connector.version || 'not given'}.`)));
    return;
  }
  const op = await api(`/connectors/${seg(name)}/operations/${seg(operation)}`);
  const stored = gateway.store
    ? (await api('/connections')).connections.filter((c) => c.connector === name)
    : null;
  const result = h('div', { id: 'result' });
  const form = operationForm(op, {
    connections: stored,
    onRun: async (input) => {
      try {
        const answer = await api(`/connectors/${seg(name)}/operations/${seg(operation)}/try`, { method: 'POST', body: input });
        fill(result, resultView(answer));
        announce(`Response ${answer.status} in ${Math.round(answer.timing?.total_ms ?? 0)} milliseconds`);
      } catch (error) {
        fill(result, notice(describe(error), 'bad'));
        announce('The call could not be made');
      }
    },
  });
  fill(detail,
    h('div', { class: 'panel' },
      h('h1', {}, op.summary || op.id),
      h('p', {}, h('span', { class: `method ${op.method.toLowerCase()}` }, op.method), ' ',
        h('code', {}, `/connectors/${name}${op.path}`),
        h('span', { class: 'muted' }, ` · operationId ${op.id}`),
        op.deprecated ? h('span', { class: 'badge warning' }, ' deprecated') : null),
      op.description ? paragraphs(op.description) : h('p', { class: 'muted' }, 'The definition gives no description.')),
    form, result);
}

// ------------------------------------------------------------------ views

async function views() {
  const { views: list } = await api('/views');
  fill(page, h('h1', {}, 'Views'),
    list.length ? null : h('p', {}, 'No view is configured (views/*.toml next to junction.toml).'),
    list.map((view) => h('section', { class: 'panel view', 'data-view': view.name, 'aria-labelledby': `view-${view.name}` },
      h('h2', { id: `view-${view.name}` }, view.summary || view.name, ' ', h('code', { class: 'muted' }, `/views/${view.name}`)),
      view.description ? paragraphs(view.description) : null,
      view.inputs.length ? h('p', {}, 'Inputs: ', view.inputs.map((input, i) => [i ? ', ' : '',
        h('code', {}, input.name), input.required ? ' (required)' : '', input.summary ? ` — ${input.summary}` : ''])) : null,
      h('h3', {}, 'Steps'),
      viewGraph(view))));
}

// ------------------------------------------------------------------ connections

async function connections() {
  if (!gateway.store) {
    fill(page, h('h1', {}, 'Connections'),
      notice('No store is configured: the connections are those of [connector.NAME.connection] in junction.toml. Add a [store] section to create connections here.'));
    return;
  }
  const { connections: list } = await api('/connections');
  // Which of the listed connections' connectors log in with OAuth (they get a Log in button).
  const names = [...new Set(list.map((c) => c.connector))];
  const described = await Promise.all(names.map((name) => api(`/connectors/${seg(name)}/connection-parameters`).catch(() => null)));
  const oauth = new Set(names.filter((name, i) => described[i]?.sets.some((set) => set.parameters.some((p) => p.oauth))));
  const status = h('div', { id: 'connection-status', role: 'status' });
  const rows = list.map((c) => connectionRow(c, status, oauth.has(c.connector)));
  const form = connectionForm(gateway.connectors, {
    loadParameters: (name) => api(`/connectors/${seg(name)}/connection-parameters`),
    onCreate: async (body) => {
      const created = await api('/connections', { method: 'POST', body });
      await connections();
      const shown = document.getElementById('connection-status');
      fill(shown, notice(`Connection ${created.name} (${created.id}) created.`, 'ok'));
      shown.querySelector('.notice')?.setAttribute('tabindex', '-1');
      announce(`Connection ${created.name} created`);
    },
  });
  fill(page, h('h1', {}, 'Connections'), status,
    h('section', { class: 'panel', 'aria-labelledby': 'stored-title' },
      h('h2', { id: 'stored-title' }, `Stored connections (${list.length})`),
      list.length ? h('table', { id: 'connections' },
        h('thead', {}, h('tr', {}, ['Name', 'Connector', 'Owner', 'Values', 'Secrets set', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'muted' }, 'None yet.')),
    form);
}

function connectionRow(c, status, logsIn) {
  const connector = gateway.connectors.find((x) => x.name === c.connector);
  const operationId = `test-op-${c.id}`;
  const testOp = h('select', { id: operationId, 'aria-label': `Operation to test ${c.name} with` },
    h('option', { value: '' }, 'testConnection (default)'),
    (connector?.operations ?? []).filter((op) => op.method === 'GET').map((op) => h('option', { value: op.id }, op.id)));
  // The page may have been drawn anew since (after a delete): report in the current one.
  const report = (text, kind) => {
    fill(document.getElementById('connection-status') ?? status, notice(text, kind));
    announce(text);
  };
  const test = h('button', { type: 'button', class: 'quiet' }, 'Test');
  test.addEventListener('click', async () => {
    test.disabled = true;
    try {
      const body = testOp.value ? { operation: testOp.value } : undefined;
      const outcome = await api(`/connections/${seg(c.id)}/test`, { method: 'POST', body });
      report(outcome.ok
        ? `Connection ${c.name} works: ${outcome.operation} answered ${outcome.status}.`
        : `Connection ${c.name} failed: ${outcome.operation} answered ${outcome.status}${outcome.error ? ` (${outcome.error.detail})` : ''}.`,
      outcome.ok ? 'ok' : 'bad');
    } catch (error) {
      report(`Testing ${c.name} failed: ${describe(error)}`, 'bad');
    } finally {
      test.disabled = false;
    }
  });
  const login = h('button', { type: 'button', class: 'quiet' }, 'Log in');
  login.addEventListener('click', async () => {
    try {
      const answer = await api(`/connections/${seg(c.id)}/login`, { method: 'POST' });
      // The identity provider's page opens in a new tab; the link stays for when pop-ups are blocked.
      window.open(answer.login_url, '_blank', 'noopener');
      fill(status, h('div', { class: 'notice' }, `Sign in at the identity provider for ${c.name}: `,
        h('a', { href: answer.login_url, target: '_blank', rel: 'noopener noreferrer' }, 'open the login page'),
        ` (valid ${Math.round((answer.expires_in ?? 600) / 60)} minutes). Then test the connection.`));
    } catch (error) {
      report(`No login for ${c.name}: ${describe(error)}`, 'bad');
    }
  });
  const remove = h('button', { type: 'button', class: 'danger' }, 'Delete');
  remove.addEventListener('click', async () => {
    if (!window.confirm(`Delete connection ${c.name} (${c.id})? Clients using it stop working.`)) return;
    try {
      await api(`/connections/${seg(c.id)}`, { method: 'DELETE' });
      await connections();
      report(`Connection ${c.name} deleted.`, 'ok');
    } catch (error) {
      report(`Deleting ${c.name} failed: ${describe(error)}`, 'bad');
    }
  });
  const values = Object.entries(c.values || {}).map(([k, v]) => `${k}=${v}`).join(', ');
  return h('tr', { 'data-connection': c.id },
    h('td', {}, c.name, h('br'), h('span', { class: 'muted mono' }, c.id)),
    h('td', {}, c.connector),
    h('td', {}, c.owner || h('span', { class: 'muted' }, 'shared')),
    h('td', { class: 'mono' }, values || '—'),
    h('td', {}, (c.secrets || []).join(', ') || '—'),
    h('td', {}, h('div', { class: 'actions' }, testOp, test, logsIn ? login : null, remove)));
}

// ------------------------------------------------------------------ statistics

async function stats() {
  const updated = h('p', { class: 'muted', id: 'stats-updated' }, 'Loading…');
  const body = h('div', { id: 'stats' });
  fill(page, h('h1', {}, 'Statistics'),
    h('p', {}, `Requests, errors, cache hits and latency of each operation and view over the last hour, refreshed every ${STATS_EVERY_MS / 1000} seconds.`),
    updated, body);
  let stopped = false;
  let timer = null;
  const refresh = async () => {
    try {
      const data = await api('/stats');
      if (stopped) return;
      drawStats(body, data);
      updated.textContent = `Updated ${new Date(data.now * 1000).toLocaleTimeString()}.`;
    } catch (error) {
      if (stopped) return;
      if (error instanceof ApiError && error.status === 404) {
        fill(body, notice('This gateway does not report statistics (GET /api/v1/stats).'));
        updated.textContent = '';
        return;
      }
      updated.textContent = `Refresh failed: ${describe(error)}`;
    }
    if (!stopped) timer = setTimeout(refresh, STATS_EVERY_MS);
  };
  leave = () => {
    stopped = true;
    clearTimeout(timer);
  };
  await refresh();
}

function drawStats(body, data) {
  if (!data.routes.length) {
    fill(body, notice('No traffic in the last hour.'));
    return;
  }
  const pct = (v) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)} %`);
  const num = (v) => (v === null || v === undefined ? '—' : `${v.toFixed(1)} ms`);
  fill(body, h('div', { class: 'cards' }, data.routes.map((route) => {
    const name = route.kind === 'view' ? `view ${route.view}` : `${route.connector}.${route.operation}`;
    const key = route.kind === 'view' ? `view:${route.view}` : `${route.connector}.${route.operation}`;
    const latency = route.latency_ms;
    return h('section', { class: 'panel card', 'data-route': key, 'data-requests': route.requests, 'aria-label': name },
      h('h2', {}, name),
      h('ul', { class: 'figures' },
        h('li', {}, 'Requests ', h('b', {}, String(route.requests)), ` (${route.rate_per_second.toFixed(2)}/s)`),
        h('li', {}, 'Errors ', h('b', {}, String(route.errors)), ` (${pct(route.error_rate)})`),
        h('li', {}, 'Cache hits ', h('b', {}, pct(route.cache_hit_ratio))),
        h('li', {}, 'p50 ', h('b', {}, num(latency?.p50))),
        h('li', {}, 'p95 ', h('b', {}, num(latency?.p95))),
        h('li', {}, 'p99 ', h('b', {}, num(latency?.p99)))),
      h('div', { class: 'legend' }, h('span', {}, h('span', { class: 'swatch requests' }), 'requests / min'), h('span', {}, h('span', { class: 'swatch errors' }), 'errors (5xx)')),
      requestsChart(route.series),
      h('div', { class: 'legend' }, h('span', {}, h('span', { class: 'swatch p50' }), 'p50'), h('span', {}, h('span', { class: 'swatch p95' }), 'p95')),
      latencyChart(route.series));
  })));
}

// ------------------------------------------------------------------ diagnostics

async function diagnostics() {
  const data = await api('/diagnostics');
  const filter = h('input', { id: 'diagnostics-filter', type: 'search', autocomplete: 'off' });
  const rows = data.diagnostics.map((d) => h('tr', { 'data-text': `${d.code} ${d.file} ${d.message}`.toLowerCase() },
    h('td', {}, h('span', { class: `badge ${d.severity}` }, d.severity)),
    h('td', { class: 'mono' }, d.code),
    h('td', { class: 'mono' }, `${d.file}${d.pointer ? `#${d.pointer}` : ''}${d.line ? `:${d.line}:${d.column ?? 0}` : ''}`),
    h('td', {}, d.message)));
  filter.addEventListener('input', () => {
    const text = filter.value.trim().toLowerCase();
    for (const row of rows) row.hidden = text !== '' && !row.dataset.text.includes(text);
  });
  fill(page, h('h1', {}, 'Diagnostics'),
    h('p', {}, `The configuration was loaded with ${data.warnings} warning${data.warnings === 1 ? '' : 's'}` +
      `${data.errors ? ` and ${data.errors} errors` : ''}. Run junction validate for the whole report of a folder.`),
    rows.length ? [
      h('p', {}, h('label', { for: 'diagnostics-filter' }, 'Filter '), filter),
      h('table', { id: 'diagnostics', class: 'panel' },
        h('thead', {}, h('tr', {}, ['Severity', 'Code', 'Where', 'Message'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))]
      : notice('Nothing to report.', 'ok'));
}

// ------------------------------------------------------------------ triggers

/** The triggers the gateway runs: state, figures, latest events, failing deliveries. */
async function triggers() {
  if (!gateway.store) {
    fill(page, h('h1', {}, 'Triggers'), notice('Triggers keep their state in the store: add a [store] section.'));
    return;
  }
  const data = await api('/triggers');
  const when = (ms) => (ms ? new Date(ms).toISOString().replace('.000', '') : '—');
  const sections = data.triggers.map((t) => {
    const state = t.state ?? {};
    const stats = t.stats ?? {};
    const status = state.paused ? h('span', { class: 'badge warning' }, 'paused')
      : state.last_error ? h('span', { class: 'badge error' }, 'failing')
        : h('span', { class: 'badge ok' }, 'running');
    return h('section', { class: 'panel', 'data-trigger': t.name, 'aria-labelledby': `trigger-${t.name}` },
      h('h2', { id: `trigger-${t.name}` }, t.name, ' ', status),
      h('p', { class: 'mono' }, `${t.connector} · ${t.operation}`),
      h('dl', { class: 'figures' },
        h('dt', {}, 'Polls'), h('dd', {}, String(state.polls ?? 0)),
        h('dt', {}, 'Next'), h('dd', {}, when(state.next_poll_at)),
        h('dt', {}, 'Events'), h('dd', {}, String(t.events)),
        h('dt', {}, 'Pending'), h('dd', {}, String(stats.pending ?? 0)),
        h('dt', {}, 'Dead letters'), h('dd', {}, String(stats.dead ?? 0)),
        h('dt', {}, 'Webhooks'), h('dd', {}, t.webhooks.length ? t.webhooks.join(', ') : 'none configured'),
        h('dt', {}, 'Registered by clients'), h('dd', {}, t.registered_webhooks.length
          ? t.registered_webhooks.map((w) => `${w.url} (${w.client_id}${w.disabled_at ? ', disabled' : ''})`).join(', ')
          : 'none')),
      state.last_error ? notice(`Last poll failed: ${state.last_error}`, 'bad') : null,
      h('h3', {}, 'Latest events'),
      t.recent.length ? h('table', { class: 'events' },
        h('thead', {}, h('tr', {}, ['#', 'Stored', 'Item'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, t.recent.map((e) => h('tr', {},
          h('td', { class: 'mono' }, String(e.id)),
          h('td', { class: 'mono' }, when(e.created_at)),
          h('td', { class: 'mono' }, firstLine(JSON.stringify(e.payload)))))))
        : h('p', { class: 'hint' }, 'No event yet.'),
      h('h3', {}, 'Failing deliveries'),
      t.failing.length ? h('table', { class: 'failing' },
        h('thead', {}, h('tr', {}, ['Webhook', 'Event', 'State', 'Attempts', 'Last error'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, t.failing.map((d) => h('tr', {},
          h('td', {}, d.subscriber),
          h('td', { class: 'mono' }, String(d.event_id)),
          h('td', {}, h('span', { class: `badge ${d.state === 'dead' ? 'error' : 'warning'}` }, d.state)),
          h('td', {}, String(d.attempts)),
          h('td', {}, d.last_error ?? '')))))
        : h('p', { class: 'hint' }, 'None.'));
  });
  fill(page, h('h1', {}, 'Triggers'),
    h('p', {}, 'Triggers the gateway polls or subscribes to (docs/triggers.md). ',
      'Pause, resume, replay and redeliver with junction triggers and junction deliveries.'),
    h('div', { id: 'triggers' }, sections.length ? sections : notice('No trigger is configured ([trigger.NAME] in junction.toml).')));
}

// ------------------------------------------------------------------ helpers

function notice(text, kind = '') {
  return h('div', { class: `notice ${kind}`, role: kind === 'bad' ? 'alert' : null }, text);
}

function describe(error) {
  return error instanceof ApiError ? error.describe() : error.message;
}

function firstLine(text) {
  const line = text.split('\n')[0];
  return line.length > 140 ? `${line.slice(0, 139)}…` : line;
}

function paragraphs(text) {
  return text.split(/\n\s*\n/).map((p) => h('p', {}, p.trim()));
}

start();
