'use strict';
// close(): under running requests (iterated or not), idempotent, refuses later calls,
// and nothing hangs (the process exits by itself).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { Engine } = require('..');
const { CONFIG, FRANCE, ENDLESS, MODEL, within, checkStream } = require('./helpers');

function isClosedError(e) {
  assert.strictEqual(e.code, 'ERR_RILL_CLOSED');
  assert.match(e.message, /closed/);
  return true;
}

test('close while a request streams: the stream ends with its terminal event', { timeout: 60000 }, async () => {
  const engine = new Engine(CONFIG);
  const events = [];
  let closing = null;
  let deltas = 0;
  await within(
    30000,
    (async () => {
      for await (const e of engine.stream(ENDLESS)) {
        events.push(e);
        if (e.type === 'response.output_text.delta' && ++deltas === 3) closing = engine.close();
      }
    })(),
    'the stream under close',
  );
  assert.ok(closing, 'close() was called mid-stream');
  await within(30000, closing, 'close');
  const { terminal } = checkStream(assert, events);
  assert.strictEqual(terminal.type, 'response.incomplete');
  assert.strictEqual(terminal.response.status, 'cancelled');
  assert.ok(deltas < 30, `${deltas} deltas: the request ran on after close`);
  assert.strictEqual(engine.closed, true);
});

test('close with several open streams, iterated or not: each still ends with its terminal event', { timeout: 90000 }, async () => {
  const engine = new Engine(CONFIG);
  // More open streams than libuv's 4 pool threads, so that polls queue behind each other.
  const running = [0, 1, 2, 3, 4].map(() => engine.stream(ENDLESS));
  const finished = engine.stream({ ...FRANCE, max_output_tokens: 2 });
  // Iterate one stream until it has produced text; leave the others untouched.
  const it = running[0];
  const first = [];
  for (;;) {
    const { value } = await within(30000, it.next(), 'next');
    first.push(value);
    if (value.type === 'response.output_text.delta') break;
  }
  // Wait until the short request has ended in rill (its events wait in rill, unpolled).
  const deadline = Date.now() + 30000;
  while (engine.stats().requests.incomplete < 1) {
    assert.ok(Date.now() < deadline, 'the short request did not end');
    await new Promise((r) => setTimeout(r, 20));
  }
  const closing = engine.close();
  // A pending read in flight at close time.
  const pending = it.next();
  await within(30000, closing, 'close');
  for (const s of [...running, finished]) assert.ok(s.finished, `stream ${s.id} got its terminal event before destroy`);

  const rest = [(await pending).value];
  for await (const e of it) rest.push(e);
  const { terminal } = checkStream(assert, [...first, ...rest]);
  assert.strictEqual(terminal.response.status, 'cancelled');
  for (const s of running.slice(1)) {
    const events = [];
    for await (const e of s) events.push(e);
    assert.strictEqual(checkStream(assert, events).terminal.response.status, 'cancelled');
  }
  const events = [];
  for await (const e of finished) events.push(e);
  const short = checkStream(assert, events).terminal;
  assert.strictEqual(short.response.status, 'incomplete', 'the request that had ended is not cancelled');
  assert.strictEqual(short.response.incomplete_details.reason, 'max_output_tokens');
});

test('close is idempotent and later calls are refused', { timeout: 60000 }, async () => {
  const engine = new Engine(CONFIG);
  const a = engine.close();
  const b = engine.close();
  assert.strictEqual(a, b, 'the same promise');
  assert.strictEqual(engine.closed, true);
  assert.throws(() => engine.stream(FRANCE), isClosedError);
  assert.throws(() => engine.stats(), isClosedError);
  await assert.rejects(engine.create(FRANCE), isClosedError);
  await within(30000, a, 'close');
  assert.strictEqual(await engine.close(), undefined);
  assert.throws(() => engine.stream(FRANCE), isClosedError);
});

test('await using closes the engine', { timeout: 60000 }, async () => {
  const engine = new Engine(CONFIG);
  const stream = engine.stream(ENDLESS);
  await within(30000, engine[Symbol.asyncDispose](), 'asyncDispose');
  assert.strictEqual(engine.closed, true);
  assert.ok(stream.finished);
});

const run = promisify(execFile);

test('nothing hangs: a process that closes under a running stream exits by itself', { timeout: 60000 }, async () => {
  const pkg = path.resolve(__dirname, '..');
  const script = `const { Engine } = require(${JSON.stringify(pkg)});
(async () => {
  const engine = new Engine({ model: ${JSON.stringify(MODEL)}, num_threads: 2 });
  const a = engine.stream(${JSON.stringify(ENDLESS)});
  const b = engine.stream(${JSON.stringify(ENDLESS)}); // never iterated
  let n = 0, last = null, closing;
  for await (const e of a) {
    last = e;
    if (e.type === 'response.output_text.delta' && ++n === 2) closing = engine.close();
  }
  await closing;
  console.log(last.type, last.response.status, b.finished);
})();`;
  // No process.exit(): the child only exits if no handle or thread keeps it alive.
  const { stdout } = await run(process.execPath, ['-e', script], { timeout: 45000, killSignal: 'SIGKILL' });
  assert.strictEqual(stdout.trim(), 'response.incomplete cancelled true');
});
