// Inline SVG drawings, no library: the timing bar of a tried call, the per-route charts of
// the statistics page, and the dependency graph of a view.
//
// Every drawing has a text alternative (role="img" + aria-label, or a list beside it) and
// carries its figures in data-* attributes, which the browser tests read.

import { h, s, uid } from './dom.js';

const STAGES = [
  ['cache', 'cache_ms', 'Cache'],
  ['policies', 'policies_ms', 'Policies'],
  ['upstream', 'upstream_ms', 'Upstream'],
];

const ms = (value) => `${value.toFixed(value < 10 ? 2 : 1)} ms`;

/**
 * The timing breakdown `{total_ms, cache_ms?, policies_ms?, upstream_ms?}` as one stacked
 * bar and a table. What the stages do not account for is the gateway's own work.
 */
export function timingBar(timing) {
  const total = timing.total_ms ?? 0;
  const parts = STAGES.filter(([, key]) => typeof timing[key] === 'number')
    .map(([klass, key, label]) => ({ klass, label, value: timing[key] }));
  const accounted = parts.reduce((sum, p) => sum + p.value, 0);
  parts.push({ klass: 'gateway', label: 'Gateway (routing, binding, the rest)', value: Math.max(total - accounted, 0) });
  const width = 600;
  let x = 0;
  const bars = parts.map((p) => {
    const w = total > 0 ? (p.value / total) * width : 0;
    const rect = s('rect', { class: `stage ${p.klass}`, x: x.toFixed(2), y: 0, width: w.toFixed(2), height: 18 },
      s('title', {}, `${p.label}: ${ms(p.value)}`));
    x += w;
    return rect;
  });
  const label = parts.map((p) => `${p.label} ${ms(p.value)}`).join(', ');
  return h('div', { class: 'timing', 'data-total-ms': total },
    s('svg', { class: 'chart', viewBox: `0 0 ${width} 18`, role: 'img', 'aria-label': `Timing: ${label}; total ${ms(total)}`, preserveAspectRatio: 'none', height: 18 }, bars),
    h('table', {},
      h('tbody', {},
        parts.map((p) => h('tr', {},
          h('th', { scope: 'row' }, h('span', { class: `swatch ${p.klass}` }), p.label),
          h('td', { class: 'num' }, ms(p.value)))),
        h('tr', {}, h('th', { scope: 'row' }, 'Total'), h('td', { class: 'num' }, ms(total))))));
}

const CHART_W = 600;
const CHART_H = 110;
const PAD = { left: 38, right: 8, top: 8, bottom: 18 };

/** The frame of a chart over 60 slots: axes, the top value, and the time labels. */
function frame(top, unit) {
  const bottom = CHART_H - PAD.bottom;
  return [
    s('line', { class: 'grid', x1: PAD.left, x2: CHART_W - PAD.right, y1: PAD.top, y2: PAD.top }),
    s('line', { class: 'axis', x1: PAD.left, x2: CHART_W - PAD.right, y1: bottom, y2: bottom }),
    s('text', { x: PAD.left - 4, y: PAD.top + 4, 'text-anchor': 'end' }, `${top}${unit}`),
    s('text', { x: PAD.left - 4, y: bottom, 'text-anchor': 'end' }, '0'),
    s('text', { x: PAD.left, y: CHART_H - 4 }, '60 min ago'),
    s('text', { x: CHART_W - PAD.right, y: CHART_H - 4, 'text-anchor': 'end' }, 'now'),
  ];
}

/** A round number at or above `value`, for the top of an axis. */
function ceiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 2.5, 5, 10].find((m) => m * power >= value);
  return step * power;
}

/** Requests per slot as bars, errors (5xx) as red bars in front. */
export function requestsChart(series) {
  const top = ceiling(Math.max(0, ...series.map((p) => p.requests)));
  const inner = CHART_W - PAD.left - PAD.right;
  const height = CHART_H - PAD.top - PAD.bottom;
  const slot = inner / Math.max(series.length, 1);
  const total = series.reduce((sum, p) => sum + p.requests, 0);
  const errors = series.reduce((sum, p) => sum + p.errors, 0);
  const bars = [];
  series.forEach((point, i) => {
    const x = PAD.left + i * slot + 0.5;
    for (const [klass, value] of [['bar', point.requests], ['bar errors', point.errors]]) {
      if (!value) continue;
      const h2 = (value / top) * height;
      bars.push(s('rect', { class: klass, x: x.toFixed(2), y: (PAD.top + height - h2).toFixed(2), width: Math.max(slot - 1, 1).toFixed(2), height: h2.toFixed(2) },
        s('title', {}, `${new Date(point.t * 1000).toLocaleTimeString()}: ${point.requests} requests, ${point.errors} errors`)));
    }
  });
  return s('svg', {
    class: 'chart requests', viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: 'img',
    'aria-label': `Requests per minute over the last hour: ${total} requests, ${errors} errors`,
    'data-requests': total, 'data-errors': errors,
  }, frame(top, ''), bars);
}

/** p50 and p95 latency per slot as two lines; slots without requests leave gaps. */
export function latencyChart(series) {
  const values = series.flatMap((p) => [p.p50_ms, p.p95_ms]).filter((v) => typeof v === 'number');
  const top = ceiling(Math.max(0, ...values));
  const inner = CHART_W - PAD.left - PAD.right;
  const height = CHART_H - PAD.top - PAD.bottom;
  const slot = inner / Math.max(series.length, 1);
  const line = (key) => {
    // A path of runs: "M" starts a run after a gap, "L" continues it.
    let d = '';
    let drawing = false;
    series.forEach((point, i) => {
      const v = point[key];
      if (typeof v !== 'number') {
        drawing = false;
        return;
      }
      const x = PAD.left + (i + 0.5) * slot;
      const y = PAD.top + height - (v / top) * height;
      d += `${drawing ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)} `;
      drawing = true;
    });
    return d.trim();
  };
  const paths = [];
  for (const key of ['p50_ms', 'p95_ms']) {
    const klass = key.replace('_ms', '');
    const d = line(key);
    if (d) paths.push(s('path', { class: `line ${klass}`, d }));
    // A dot on every point: a minute with traffic between two without is still seen.
    series.forEach((point, i) => {
      if (typeof point[key] !== 'number') return;
      paths.push(s('circle', {
        class: `dot ${klass}`, r: 2.5,
        cx: (PAD.left + (i + 0.5) * slot).toFixed(1),
        cy: (PAD.top + height - (point[key] / top) * height).toFixed(1),
      }, s('title', {}, `${new Date(point.t * 1000).toLocaleTimeString()}: ${klass} ${ms(point[key])}`)));
    });
  }
  const last = [...series].reverse().find((p) => typeof p.p95_ms === 'number');
  return s('svg', {
    class: 'chart latency', viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: 'img',
    'aria-label': last ? `Latency over the last hour; latest p50 ${ms(last.p50_ms ?? 0)}, p95 ${ms(last.p95_ms)}` : 'Latency over the last hour: no requests',
  }, frame(top, ' ms'), paths);
}

const NODE_W = 190;
const NODE_H = 46;
const GAP_X = 70;
const GAP_Y = 18;

/**
 * The steps of a view as a graph: a step stands one column right of the latest step it
 * depends on, so independent steps share the first column (they run in parallel) and
 * edges point left to right, from a step to the ones waiting for it.
 */
export function viewGraph(view) {
  const steps = view.steps.map(([name, calls]) => ({ name, calls }));
  const deps = view.dependencies || [];
  const column = new Map();
  const depth = (name, seen = new Set()) => {
    if (column.has(name)) return column.get(name);
    if (seen.has(name)) return 0; // a cycle cannot compile; stay safe anyway
    seen.add(name);
    const before = deps.filter(([step]) => step === name).map(([, on]) => depth(on, seen) + 1);
    const d = Math.max(0, ...before);
    column.set(name, d);
    return d;
  };
  steps.forEach((step) => depth(step.name));
  const rows = new Map();
  for (const step of steps) {
    const c = column.get(step.name);
    step.col = c;
    step.row = rows.get(c) ?? 0;
    rows.set(c, step.row + 1);
  }
  const columns = Math.max(1, ...[...column.values()].map((c) => c + 1));
  const most = Math.max(1, ...rows.values());
  const width = columns * NODE_W + (columns - 1) * GAP_X + 2;
  const height = most * NODE_H + (most - 1) * GAP_Y + 2;
  const at = new Map(steps.map((step) => [step.name, {
    x: 1 + step.col * (NODE_W + GAP_X),
    y: 1 + step.row * (NODE_H + GAP_Y),
  }]));
  const marker = uid('arrow');
  const edges = deps.filter(([a, b]) => at.has(a) && at.has(b)).map(([step, on]) => {
    const from = at.get(on);
    const to = at.get(step);
    const x1 = from.x + NODE_W;
    const y1 = from.y + NODE_H / 2;
    const x2 = to.x - 2;
    const y2 = to.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    return s('path', {
      class: 'edge', 'data-from': on, 'data-to': step, 'marker-end': `url(#${marker})`,
      d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
    }, s('title', {}, `${step} waits for ${on}`));
  });
  const nodes = steps.map((step) => {
    const { x, y } = at.get(step.name);
    return s('g', { class: 'node', 'data-step': step.name, transform: `translate(${x},${y})` },
      s('rect', { width: NODE_W, height: NODE_H, rx: 6 }),
      s('text', { class: 'name', x: 10, y: 19 }, clip(step.name, 24)),
      s('text', { x: 10, y: 36 }, clip(step.calls, 30)),
      s('title', {}, `${step.name}: calls ${step.calls}`));
  });
  const graph = s('svg', {
    class: 'graph', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': `Steps of view ${view.name}: ${steps.length} steps, ${edges.length} dependencies`,
    'data-nodes': steps.length, 'data-edges': edges.length,
  },
  s('defs', {}, s('marker', { id: marker, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    s('path', { class: 'arrow', d: 'M0,0 L10,5 L0,10 z' }))),
  edges, nodes);
  // The same in words, for screen readers and for copying.
  const words = h('ul', { class: 'hint' }, steps.map((step) => {
    const waits = deps.filter(([a]) => a === step.name).map(([, b]) => b);
    return h('li', {}, `${step.name} calls ${step.calls}${waits.length ? `, after ${waits.join(' and ')}` : ', at once'}`);
  }));
  return h('div', { class: 'graph-box' }, graph, words);
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}
