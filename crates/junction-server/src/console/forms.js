// Forms generated from definitions: the test form of an operation (from its parameters)
// and the form that creates a connection (from the connector's connection parameters).
//
// Validation is the browser's own (required, number bounds, types) plus a custom message
// for JSON fields, reported with reportValidity() so the first problem gets focus.

import { h, uid } from './dom.js';
import { timingBar } from './charts.js';

/** `x-ms-visibility` order: important first, advanced after; internal is not shown. */
const ORDER = { important: 0, none: 1, advanced: 2 };

/**
 * The test form of operation `detail` (GET …/operations/{id}). `connections`: the stored
 * connections of its connector, or null when the gateway has no store. `onRun(input)` is
 * called with `{parameters, body, connection}` and answers a promise.
 */
export function operationForm(detail, { connections, onRun }) {
  const shown = detail.parameters.filter((p) => p.visibility !== 'internal');
  const internal = detail.parameters.length - shown.length;
  shown.sort((a, b) => (ORDER[a.visibility] ?? 1) - (ORDER[b.visibility] ?? 1));
  const main = shown.filter((p) => p.visibility !== 'advanced');
  const advanced = shown.filter((p) => p.visibility === 'advanced');

  const form = h('form', { class: 'panel', 'aria-label': `Try ${detail.summary || detail.id}`, novalidate: false });
  if (connections) {
    const id = uid('connection');
    form.append(h('div', { class: 'field' },
      h('label', { for: id }, 'Connection'),
      h('select', { id, name: 'connection' },
        h('option', { value: '' }, `Configured connection ([connector.${detail.connector}.connection])`),
        connections.map((c) => h('option', { value: c.id }, `${c.name}${c.owner ? ` (owner ${c.owner})` : ''} — ${c.id}`)))));
  }
  if (main.length) {
    form.append(h('fieldset', {}, h('legend', {}, 'Parameters'), h('div', { class: 'fields' }, main.map(field))));
  } else if (!detail.body) {
    form.append(h('p', { class: 'muted' }, 'This operation takes no parameters.'));
  }
  if (advanced.length) {
    form.append(h('details', {},
      h('summary', {}, `Advanced parameters (${advanced.length})`),
      h('div', { class: 'fields' }, advanced.map(field))));
  }
  if (internal) {
    form.append(h('p', { class: 'hint' },
      `${internal} internal parameter${internal > 1 ? 's are' : ' is'} filled in by the gateway.`));
  }
  if (detail.body) form.append(bodyField(detail.body));

  const run = h('button', { type: 'submit', id: 'run' }, 'Run');
  const busy = h('span', { class: 'muted', role: 'status' });
  form.append(h('div', { class: 'actions' }, run, busy,
    h('span', { class: 'hint' }, 'Enter in a field runs it too.')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = collect(form);
    if (!input || !form.reportValidity()) return;
    run.disabled = true;
    busy.textContent = 'Running…';
    try {
      await onRun(input);
    } finally {
      run.disabled = false;
      busy.textContent = '';
    }
  });
  return form;
}

/** One parameter's label, control and hint. */
function field(p) {
  const id = uid('param');
  const hintId = `${id}-hint`;
  const type = p.type || p.schema?.type || 'string';
  const control = controlFor(p, type, id);
  control.dataset.param = p.name;
  control.dataset.type = Array.isArray(type) ? type[0] : type;
  if (type === 'array') control.dataset.items = p.schema?.items?.type || 'string';
  if (p.required) {
    control.required = true;
    control.setAttribute('aria-required', 'true');
  }
  const hints = [];
  if (p.description) hints.push(p.description);
  if (type === 'array') hints.push(`One item per line${p.schema?.items?.enum ? ` (${p.schema.items.enum.join(', ')})` : ''}.`);
  if (p.format && !['int32', 'int64'].includes(p.format)) hints.push(`Format: ${p.format}.`);
  if (hints.length) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' },
    h('label', { for: id },
      p.summary || p.name,
      p.required ? h('span', { class: 'required-mark' }, ' *', h('span', { class: 'visually-hidden' }, ' (required)')) : null,
      ' ',
      h('span', { class: 'where' }, `${p.summary ? `${p.name} · ` : ''}${p.in}`)),
    control,
    hints.length ? h('p', { class: 'hint', id: hintId }, hints.join(' ')) : null);
}

function controlFor(p, type, id) {
  const schema = p.schema || {};
  const preset = p.default;
  if (p.file) {
    return h('input', { id, type: 'text', disabled: true, placeholder: 'files cannot be sent from the console' });
  }
  if (Array.isArray(p.enum) && p.enum.length) {
    return h('select', { id },
      p.required && preset !== undefined ? null : h('option', { value: '' }, '— not set —'),
      p.enum.map((v) => h('option', { value: String(v), selected: preset !== undefined && String(preset) === String(v) }, String(v))));
  }
  switch (type) {
    case 'boolean':
      return h('select', { id },
        h('option', { value: '' }, '— not set —'),
        ['true', 'false'].map((v) => h('option', { value: v, selected: preset !== undefined && String(preset) === v }, v)));
    case 'integer':
    case 'number':
      return h('input', {
        id, type: 'number', step: type === 'integer' ? '1' : 'any', inputmode: type === 'integer' ? 'numeric' : 'decimal',
        min: schema.minimum, max: schema.maximum, value: preset,
      });
    case 'array': {
      const area = h('textarea', { id, rows: 3 });
      if (Array.isArray(preset)) area.value = preset.join('\n');
      return area;
    }
    case 'object': {
      const area = h('textarea', { id, rows: 4, spellcheck: 'false' });
      if (preset !== undefined) area.value = JSON.stringify(preset, null, 2);
      return area;
    }
    default: {
      const kinds = { date: 'date', email: 'email', uri: 'url', url: 'url', password: 'password' };
      const input = h('input', {
        id, type: kinds[p.format] || 'text', minlength: schema.minLength, maxlength: schema.maxLength,
        autocomplete: 'off', spellcheck: 'false',
        placeholder: p.format === 'date-time' ? '2025-01-31T12:00:00Z' : null,
      });
      if (preset !== undefined) input.value = String(preset);
      return input;
    }
  }
}

/** The JSON body's textarea, prefilled with a skeleton of its schema. */
function bodyField(body) {
  const id = uid('body');
  const area = h('textarea', { id, rows: 10, spellcheck: 'false', 'aria-describedby': `${id}-hint` });
  area.dataset.body = 'json';
  if (body.required) {
    area.required = true;
    area.setAttribute('aria-required', 'true');
  }
  const skeleton = example(body.schema, 0);
  if (skeleton !== undefined) area.value = JSON.stringify(skeleton, null, 2);
  const notes = [body.description, `Sent as ${body.media_types?.[0] || 'application/json'}.`].filter(Boolean);
  return h('fieldset', {},
    h('legend', {}, 'Body'),
    h('label', { for: id }, body.summary || `Request body (JSON)`,
      body.required ? h('span', { class: 'required-mark' }, ' *', h('span', { class: 'visually-hidden' }, ' (required)')) : null),
    area,
    h('p', { class: 'hint', id: `${id}-hint` }, notes.join(' ')),
    h('details', {}, h('summary', {}, 'Body schema'), h('pre', { class: 'body' }, JSON.stringify(body.schema, null, 2))));
}

/** A value of `schema`'s shape: defaults where given, else empty values of each type. */
function example(schema, depth) {
  if (!schema || typeof schema !== 'object' || depth > 4) return undefined;
  if (schema.default !== undefined) return schema.default;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === 'object' || schema.properties) {
    const out = {};
    for (const [name, property] of Object.entries(schema.properties || {})) {
      if (property?.['x-ms-visibility'] === 'internal' || property?.readOnly) continue;
      const value = example(property, depth + 1);
      if (value !== undefined) out[name] = value;
    }
    return out;
  }
  switch (type) {
    case 'array': return [];
    case 'integer': case 'number': return 0;
    case 'boolean': return false;
    case 'string': return '';
    default: return undefined;
  }
}

/**
 * Reads the form: `{parameters, body, connection}` with typed values, or null after
 * marking the first field that cannot be read (bad JSON, a non-number).
 */
function collect(form) {
  const parameters = {};
  let ok = true;
  for (const control of form.querySelectorAll('[data-param]')) {
    control.setCustomValidity('');
    control.removeAttribute('aria-invalid');
    if (control.disabled) continue;
    const raw = control.value.trim();
    if (raw === '') continue;
    try {
      parameters[control.dataset.param] = typed(raw, control.dataset.type, control.dataset.items);
    } catch (error) {
      control.setCustomValidity(error.message);
      control.setAttribute('aria-invalid', 'true');
      ok = false;
    }
  }
  let body;
  const area = form.querySelector('[data-body]');
  if (area) {
    area.setCustomValidity('');
    area.removeAttribute('aria-invalid');
    if (area.value.trim() !== '') {
      try {
        body = JSON.parse(area.value);
      } catch (error) {
        area.setCustomValidity(`The body is not valid JSON: ${error.message}`);
        area.setAttribute('aria-invalid', 'true');
        ok = false;
      }
    }
  }
  if (!ok) {
    form.reportValidity();
    return null;
  }
  const input = { parameters };
  if (body !== undefined) input.body = body;
  const connection = form.elements.namedItem('connection');
  if (connection && connection.value) input.connection = connection.value;
  return input;
}

function typed(raw, type, items) {
  switch (type) {
    case 'integer': {
      const n = Number(raw);
      if (!Number.isInteger(n)) throw new Error(`"${raw}" is not an integer`);
      return n;
    }
    case 'number': {
      const n = Number(raw);
      if (Number.isNaN(n)) throw new Error(`"${raw}" is not a number`);
      return n;
    }
    case 'boolean': return raw === 'true';
    case 'array':
      return raw.split('\n').map((line) => line.trim()).filter(Boolean).map((item) => typed(item, items, 'string'));
    case 'object':
      try {
        return JSON.parse(raw);
      } catch (error) {
        throw new Error(`not valid JSON: ${error.message}`);
      }
    default: return raw;
  }
}

/** The answer of a try: status, timing, headers and the (pretty) body. */
export function resultView(answer) {
  const klass = answer.status < 300 ? 'ok' : answer.status < 400 ? 'warn' : 'bad';
  const body = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body, null, 2);
  const headers = Object.entries(answer.headers || {});
  const timing = answer.timing || {};
  return h('section', { class: 'result panel', 'aria-labelledby': 'result-title', 'data-status': answer.status },
    h('h2', { id: 'result-title', tabindex: '-1' }, 'Response'),
    h('div', { class: 'status-line' },
      h('span', { class: `status ${klass}`, id: 'result-status' }, String(answer.status)),
      h('span', { class: 'muted' }, `${(timing.total_ms ?? 0).toFixed(1)} ms in total`),
      answer.headers?.['x-cache'] ? h('span', { class: 'badge' }, `cache ${answer.headers['x-cache']}`) : null,
      h('span', { class: 'muted' }, `${answer.size} bytes${answer.truncated ? ' (truncated)' : ''}`)),
    h('h3', {}, 'Timing'),
    timingBar(timing),
    h('div', { class: 'two' },
      h('div', {},
        h('h3', {}, 'Body'),
        h('pre', { class: 'body', id: 'result-body', tabindex: '0', 'aria-label': 'Response body' }, body)),
      h('div', {},
        h('h3', {}, `Headers (${headers.length})`),
        h('table', {},
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
          h('tbody', {}, headers.map(([name, value]) => h('tr', {}, h('td', { class: 'mono' }, name), h('td', { class: 'mono' }, value))))))));
}

/**
 * The form that creates a connection. `connectors`: names; `loadParameters(name)` answers
 * GET …/connection-parameters; `onCreate(body)` creates it. Secret values are typed into
 * password fields and cleared as soon as the connection is created.
 */
export function connectionForm(connectors, { loadParameters, onCreate }) {
  const connectorId = uid('conn-connector');
  const nameId = uid('conn-name');
  const ownerId = uid('conn-owner');
  const connector = h('select', { id: connectorId, name: 'connector', required: true },
    h('option', { value: '' }, '— choose a connector —'),
    connectors.map((c) => h('option', { value: c.name }, `${c.title} (${c.name})`)));
  const sets = h('div');
  const error = h('p', { class: 'error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, 'Create connection');
  const form = h('form', { class: 'panel', 'aria-labelledby': 'new-connection-title' },
    h('h2', { id: 'new-connection-title' }, 'New connection'),
    h('div', { class: 'fields' },
      h('div', { class: 'field' }, h('label', { for: connectorId }, 'Connector'), connector),
      h('div', { class: 'field' },
        h('label', { for: nameId }, 'Name', h('span', { class: 'required-mark' }, ' *')),
        h('input', { id: nameId, name: 'name', required: true, autocomplete: 'off', 'aria-describedby': `${nameId}-hint` }),
        h('p', { class: 'hint', id: `${nameId}-hint` }, 'Letters, digits, "-", "_" and "."; unique per connector.')),
      h('div', { class: 'field' },
        h('label', { for: ownerId }, 'Owner client (optional)'),
        h('input', { id: ownerId, name: 'owner', autocomplete: 'off', 'aria-describedby': `${ownerId}-hint` }),
        h('p', { class: 'hint', id: `${ownerId}-hint` }, 'A client name makes it that client\'s own connection; empty: shared.'))),
    sets, error,
    h('div', { class: 'actions' }, submit));

  let described = null;
  connector.addEventListener('change', async () => {
    sets.replaceChildren();
    described = null;
    if (!connector.value) return;
    try {
      described = await loadParameters(connector.value);
      sets.append(parameterSets(described));
    } catch (e) {
      error.textContent = e.describe ? e.describe() : e.message;
    }
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    if (!form.reportValidity()) return;
    const body = { connector: connector.value, name: form.elements.namedItem('name').value.trim(), values: {} };
    const owner = form.elements.namedItem('owner').value.trim();
    if (owner) body.owner = owner;
    const chosen = form.querySelector('input[name="parameter_set"]:checked');
    if (chosen) body.parameter_set = chosen.value;
    const active = chosen ? form.querySelector(`[data-set="${CSS.escape(chosen.value)}"]`) : form;
    for (const control of active.querySelectorAll('[data-value]')) {
      if (control.value !== '') body.values[control.dataset.value] = control.value;
    }
    submit.disabled = true;
    try {
      await onCreate(body);
      // Never keep a typed secret around: clear every value field.
      for (const control of form.querySelectorAll('[data-value]')) control.value = '';
      form.elements.namedItem('name').value = '';
    } catch (e) {
      error.textContent = e.describe ? e.describe() : e.message;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** The parameter sets of a connector: one group of fields, or a choice between several. */
function parameterSets(described) {
  const notes = described.derived
    ? h('p', { class: 'hint' }, 'This definition declares no connection parameters; these are the values its security schemes read. All are kept secret.')
    : null;
  if (described.sets.length === 1) {
    const [set] = described.sets;
    return h('div', {}, notes, set.parameters.length
      ? h('fieldset', {}, h('legend', {}, 'Connection values'), h('div', { class: 'fields' }, set.parameters.map(valueField)))
      : h('p', { class: 'muted' }, 'This connector takes no connection values.'));
  }
  const groups = described.sets.map((set, index) => {
    const group = h('fieldset', { 'data-set': set.name, disabled: index !== 0 },
      h('legend', {}, `Values for ${set.display_name || set.name}`),
      h('div', { class: 'fields' }, set.parameters.map(valueField)));
    return group;
  });
  const radios = described.sets.map((set, index) => {
    const id = uid('set');
    const radio = h('input', { type: 'radio', id, name: 'parameter_set', value: set.name, checked: index === 0 });
    radio.addEventListener('change', () => {
      groups.forEach((g) => { g.disabled = g.dataset.set !== set.name; g.hidden = g.disabled; });
    });
    return h('div', {}, radio, ' ', h('label', { for: id }, set.display_name || set.name));
  });
  groups.forEach((g, index) => { g.hidden = index !== 0; });
  return h('div', {}, notes,
    h('fieldset', {}, h('legend', {}, 'How to authenticate'), radios),
    groups);
}

/** One connection value: a password field for secrets, a list for allowed values. */
function valueField(p) {
  if (p.oauth) return oauthFields(p);
  const id = uid('value');
  const kind = (p.type || '').toLowerCase();
  let control;
  if (p.allowed_values?.length) {
    control = h('select', { id },
      p.required ? null : h('option', { value: '' }, '— not set —'),
      p.allowed_values.map((v) => h('option', { value: v }, v)));
  } else if (kind === 'bool' || kind === 'boolean') {
    control = h('select', { id }, h('option', { value: '' }, '— not set —'), h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
  } else if (kind === 'int' || kind === 'integer') {
    control = h('input', { id, type: 'number', step: '1' });
  } else {
    control = h('input', { id, type: p.secret ? 'password' : 'text', autocomplete: p.secret ? 'new-password' : 'off', spellcheck: 'false' });
  }
  control.dataset.value = p.name;
  if (p.required) {
    control.required = true;
    control.setAttribute('aria-required', 'true');
  }
  const hintId = `${id}-hint`;
  if (p.description) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' },
    h('label', { for: id }, p.display_name || p.name,
      p.required ? h('span', { class: 'required-mark' }, ' *', h('span', { class: 'visually-hidden' }, ' (required)')) : null,
      ' ', h('span', { class: 'where' }, p.display_name ? `${p.name}${p.secret ? ' · secret' : ''}` : (p.secret ? 'secret' : ''))),
    control,
    p.description ? h('p', { class: 'hint', id: hintId }, p.description) : null);
}

/** The OAuth app settings of an `oauthSetting` parameter (the login fills in the token). */
function oauthFields(p) {
  const row = (setting, label, attrs) => {
    const id = uid('oauth');
    const control = h('input', { id, autocomplete: 'off', spellcheck: 'false', ...attrs });
    control.dataset.value = `${p.name}:${setting}`;
    return h('div', { class: 'field' }, h('label', { for: id }, label), control);
  };
  const grantId = uid('oauth');
  const grant = h('select', { id: grantId },
    h('option', { value: '' }, 'authorization code (default)'),
    h('option', { value: 'client_credentials' }, 'client credentials'));
  grant.dataset.value = `${p.name}:grantType`;
  return h('fieldset', {},
    h('legend', {}, `OAuth app (${p.display_name || p.name}) — optional overrides`),
    h('div', { class: 'fields' },
      row('clientId', 'Client id', { type: 'text' }),
      row('clientSecret', 'Client secret', { type: 'password', autocomplete: 'new-password' }),
      row('scopes', 'Scopes (space separated)', { type: 'text' }),
      h('div', { class: 'field' }, h('label', { for: grantId }, 'Grant type'), grant)),
    h('p', { class: 'hint' }, 'After creating the connection, use “Log in” to sign in at the identity provider.'));
}
