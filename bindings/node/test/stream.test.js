'use strict';
// Streaming, create(), concurrency, cancellation (AbortSignal, stream.cancel(), break)
// and event-loop responsiveness, on one engine with the default model.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const rill = require('..');
const { Engine, RillStream } = rill;
const { CONFIG, FRANCE, ENDLESS, TERMINAL, within, checkStream } = require('./helpers');

let engine;
before(() => {
  engine = new Engine(CONFIG);
});
after(async () => {
  await within(30000, engine.close(), 'close');
});

/** Polls stats() until `cond(stats)` holds (the engine updates counters between steps). */
async function statsUntil(cond, what) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const s = engine.stats();
    if (cond(s)) return s;
    if (Date.now() > deadline) assert.fail(`stats never showed ${what}: ${JSON.stringify(s.requests)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the library: version, ABI, status names', () => {
  assert.match(rill.version(), /^\d+\.\d+\.\d+/);
  assert.strictEqual(rill.abiVersion(), rill.ABI_VERSION);
  assert.strictEqual(rill.statusName(6), 'INVALID_REQUEST');
  assert.strictEqual(rill.statusName(rill.Status.NO_EVENT), 'NO_EVENT');
  assert.strictEqual(rill.statusName(99), 'UNKNOWN');
});

test('the engine runs the default model with the config it was given', () => {
  const s = engine.stats();
  assert.strictEqual(s.model, 'SmolLM2-135M-Instruct.Q4_1');
  assert.strictEqual(s.architecture, 'llama');
  assert.strictEqual(s.num_threads, 2);
  assert.strictEqual(s.poisoned, null);
  assert.strictEqual(engine.closed, false);
});

test('stream: the capital of France, event by event, ending with response.completed', { timeout: 60000 }, async () => {
  const stream = engine.stream(FRANCE);
  assert.ok(stream instanceof RillStream);
  assert.ok(Number(stream.id) > 0, `request id ${stream.id}`);
  const events = [];
  for await (const event of stream) {
    assert.strictEqual(typeof event, 'object');
    events.push(event);
  }
  const { terminal, text } = checkStream(assert, events);
  assert.strictEqual(terminal.type, 'response.completed');
  assert.strictEqual(terminal.response.status, 'completed');
  assert.match(text, /Paris/);
  assert.ok(events.some((e) => e.type === 'response.output_text.delta'), 'text arrives in deltas');
  const done = events.find((e) => e.type === 'response.output_text.done');
  assert.strictEqual(done.text, text);
  assert.ok(stream.finished);
  assert.deepStrictEqual(await stream.next(), { value: undefined, done: true }, 'the stream stays ended');
});

test('stream accepts a JSON string request', { timeout: 60000 }, async () => {
  const events = [];
  for await (const e of engine.stream(JSON.stringify({ ...FRANCE, max_output_tokens: 4 }))) events.push(e);
  const { terminal } = checkStream(assert, events);
  assert.strictEqual(terminal.type, 'response.incomplete');
});

test('create resolves to the final Response', { timeout: 60000 }, async () => {
  const response = await engine.create(FRANCE);
  assert.strictEqual(response.object, 'response');
  assert.strictEqual(response.status, 'completed');
  assert.match(response.output[0].content[0].text, /Paris/);
  assert.ok(response.usage.output_tokens > 0);
});

/** A Response without what differs between two runs of one request. */
function withoutIds(r) {
  return { ...r, id: '', created_at: 0, output: r.output.map((item) => ({ ...item, id: '' })) };
}

test("create's Response equals the streamed terminal event's", { timeout: 60000 }, async () => {
  const request = { input: 'What is the capital of Italy? Answer in one sentence.', temperature: 0, max_output_tokens: 48 };
  await engine.create(request); // warms the prefix cache: both runs below report the same usage
  const events = [];
  for await (const ev of engine.stream(request)) events.push(ev);
  const { terminal } = checkStream(assert, events);
  const response = await engine.create(request);
  assert.strictEqual(response.status, 'completed');
  assert.deepStrictEqual(withoutIds(response), withoutIds(terminal.response));
});

test('create: the token limit gives an incomplete Response', { timeout: 60000 }, async () => {
  const response = await engine.create({ ...FRANCE, max_output_tokens: 3 });
  assert.strictEqual(response.status, 'incomplete');
  assert.strictEqual(response.incomplete_details.reason, 'max_output_tokens');
  assert.strictEqual(response.usage.output_tokens, 3);
});

test('several requests run concurrently and their events interleave', { timeout: 120000 }, async () => {
  const n = 3;
  const log = []; // [stream index, event type] in arrival order, across all streams
  const streams = [];
  for (let i = 0; i < n; i++) {
    streams.push(engine.stream({ input: `Say something about the number ${i + 1}.`, temperature: 0, ignore_eos: true, max_output_tokens: 24 }));
  }
  const ids = new Set(streams.map((s) => String(s.id)));
  assert.strictEqual(ids.size, n, 'distinct request ids');
  const results = await within(
    90000,
    Promise.all(
      streams.map(async (stream, i) => {
        const events = [];
        for await (const e of stream) {
          events.push(e);
          log.push([i, e.type]);
        }
        return events;
      }),
    ),
    'concurrent streams',
  );
  for (const events of results) {
    const { terminal } = checkStream(assert, events);
    assert.strictEqual(terminal.type, 'response.incomplete');
    assert.strictEqual(terminal.response.incomplete_details.reason, 'max_output_tokens');
    assert.strictEqual(terminal.response.usage.output_tokens, 24);
  }
  // Concurrent, not one after another: every stream's first delta arrives before any
  // stream's terminal event.
  const firstTerminal = log.findIndex(([, type]) => TERMINAL.has(type));
  for (let i = 0; i < n; i++) {
    const firstDelta = log.findIndex(([j, type]) => j === i && type === 'response.output_text.delta');
    assert.ok(firstDelta >= 0 && firstDelta < firstTerminal, `stream ${i}: first delta at ${firstDelta}, first terminal at ${firstTerminal}`);
  }
  // And create() calls at once, each with its own answer.
  const [france, other] = await within(
    60000,
    Promise.all([engine.create(FRANCE), engine.create({ input: 'Name a color.', temperature: 0, max_output_tokens: 16 })]),
    'concurrent create',
  );
  assert.match(france.output[0].content[0].text, /Paris/);
  assert.notStrictEqual(france.id, other.id);
  assert.ok(other.output[0].content[0].text.length > 0);
});

test('an AbortSignal cancels a request mid-stream; the stream ends with its terminal event', { timeout: 60000 }, async () => {
  const before = engine.stats().requests.cancelled;
  const controller = new AbortController();
  const events = [];
  let deltas = 0;
  let deltasAfterAbort = 0;
  await within(
    30000,
    (async () => {
      for await (const e of engine.stream(ENDLESS, { signal: controller.signal })) {
        events.push(e);
        if (e.type !== 'response.output_text.delta') continue;
        deltas++;
        if (controller.signal.aborted) deltasAfterAbort++;
        if (deltas === 3) controller.abort();
      }
    })(),
    'the cancelled stream',
  );
  const { terminal } = checkStream(assert, events);
  assert.strictEqual(terminal.type, 'response.incomplete');
  assert.strictEqual(terminal.response.status, 'cancelled');
  assert.strictEqual(terminal.response.incomplete_details, null);
  // Without the cancel the request never ends; it stops within a few engine steps.
  assert.ok(deltasAfterAbort < 20, `${deltasAfterAbort} deltas after the abort`);
  assert.strictEqual(engine.stats().requests.cancelled, before + 1);
});

test('an already aborted signal cancels the request at once', { timeout: 60000 }, async () => {
  const events = [];
  const stream = engine.stream(ENDLESS, { signal: AbortSignal.abort() });
  await within(
    30000,
    (async () => {
      for await (const e of stream) events.push(e);
    })(),
    'the cancelled stream',
  );
  const { terminal } = checkStream(assert, events);
  assert.strictEqual(terminal.response.status, 'cancelled');
});

test('create with an AbortSignal resolves to the cancelled Response', { timeout: 60000 }, async () => {
  const response = await within(30000, engine.create(ENDLESS, { signal: AbortSignal.timeout(300) }), 'create');
  assert.strictEqual(response.status, 'cancelled');
});

test('stream.cancel() cancels; a signal aborted after the end changes nothing', { timeout: 60000 }, async () => {
  const controller = new AbortController();
  const stream = engine.stream(ENDLESS, { signal: controller.signal });
  const events = [];
  await within(
    30000,
    (async () => {
      for await (const e of stream) {
        events.push(e);
        if (e.type === 'response.output_text.delta' && events.length === 6) stream.cancel();
      }
    })(),
    'the cancelled stream',
  );
  const { terminal } = checkStream(assert, events);
  assert.strictEqual(terminal.response.status, 'cancelled');
  controller.abort(); // the listener was removed at the end: no call on a finished request
  assert.deepStrictEqual(await stream.next(), { value: undefined, done: true });
});

test('break out of for-await cancels the request in rill', { timeout: 60000 }, async () => {
  const before = engine.stats().requests.cancelled;
  const stream = engine.stream(ENDLESS);
  let n = 0;
  for await (const e of stream) {
    if (e.type === 'response.output_text.delta' && ++n === 2) break;
  }
  // The request runs forever; only the cancel can end it. Its remaining events are
  // drained in the background up to the terminal event.
  await statsUntil((s) => s.requests.cancelled === before + 1, 'the cancel');
  await within(10000, (async () => { while (!stream.finished) await new Promise((r) => setTimeout(r, 10)); })(), 'the drain');
  const generated = engine.stats().tokens.generated;
  await new Promise((r) => setTimeout(r, 300));
  assert.strictEqual(engine.stats().tokens.generated, generated, 'no tokens are generated after the cancel');
  assert.deepStrictEqual(await stream.next(), { value: undefined, done: true });
});

test('the event loop keeps ticking while streaming', { timeout: 60000 }, async () => {
  const ticks = [];
  const start = performance.now();
  const timer = setInterval(() => ticks.push(performance.now()), 10);
  let deltas = 0;
  try {
    for await (const e of engine.stream({ input: 'Count from 1 to 100.', temperature: 0, ignore_eos: true, max_output_tokens: 48 })) {
      if (e.type === 'response.output_text.delta') deltas++;
    }
  } finally {
    clearInterval(timer);
  }
  const end = performance.now();
  assert.strictEqual(deltas, 48);
  const times = [start, ...ticks, end];
  let maxGap = 0;
  for (let i = 1; i < times.length; i++) maxGap = Math.max(maxGap, times[i] - times[i - 1]);
  const expected = (end - start) / 10;
  // A blocking poll would starve timers for the whole stream (for-await over resolved
  // promises never yields to timers): no ticks at all.
  assert.ok(ticks.length >= expected * 0.3, `${ticks.length} ticks in ${Math.round(end - start)} ms`);
  assert.ok(maxGap < 400, `the event loop stalled for ${Math.round(maxGap)} ms`);
});
