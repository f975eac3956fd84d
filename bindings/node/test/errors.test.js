'use strict';
// Bad input: RillError carries rill's status, status name and message; the engine keeps
// serving. Also the library lookup (RILL_LIB, RILL_LIB_DIR) in child processes.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { Engine, RillError, Status } = require('..');
const { CONFIG, FRANCE, MODEL, within } = require('./helpers');

/** Asserts that `fn` throws (or rejects with) a RillError with `status` whose message
 * matches `message`. */
function isRillError(status, message) {
  return (e) => {
    assert.ok(e instanceof RillError, `not a RillError: ${e}`);
    assert.ok(e instanceof Error);
    assert.strictEqual(e.name, 'RillError');
    assert.strictEqual(e.status, status);
    assert.strictEqual(e.statusName, Object.keys(Status).find((k) => Status[k] === status));
    assert.match(e.message, message);
    return true;
  };
}

let engine;
before(() => {
  engine = new Engine(CONFIG);
});
after(async () => {
  await within(30000, engine.close(), 'close');
});

test('a missing model file: INVALID_CONFIG naming the key and the path', () => {
  assert.throws(() => new Engine({ model: '/nonexistent/model.gguf', num_threads: 2 }), isRillError(Status.INVALID_CONFIG, /model.*\/nonexistent\/model\.gguf/));
});

test('an unknown config key: INVALID_CONFIG naming the key', () => {
  assert.throws(() => new Engine({ ...CONFIG, bogus_key: 1 }), isRillError(Status.INVALID_CONFIG, /bogus_key/));
});

test('a bad config value: INVALID_CONFIG naming the key', () => {
  assert.throws(() => new Engine({ ...CONFIG, num_threads: 0 }), isRillError(Status.INVALID_CONFIG, /num_threads/));
});

test('a config that is not JSON: INVALID_JSON', () => {
  assert.throws(() => new Engine('{"model": '), isRillError(Status.INVALID_JSON, /JSON/));
});

test('a config that is neither an object nor a string: TypeError', () => {
  assert.throws(() => new Engine(42), TypeError);
});

test('empty input: INVALID_REQUEST mentioning `input`', () => {
  assert.throws(() => engine.stream({ input: '' }), isRillError(Status.INVALID_REQUEST, /`input`/));
});

test('a request that is not JSON: INVALID_JSON', () => {
  assert.throws(() => engine.stream('this is not JSON'), isRillError(Status.INVALID_JSON, /./));
});

test('an unknown request field: INVALID_REQUEST naming it', () => {
  assert.throws(() => engine.stream({ input: 'hi', frobnicate: true }), isRillError(Status.INVALID_REQUEST, /frobnicate/));
});

test('a wrong type: INVALID_REQUEST naming the field', () => {
  assert.throws(() => engine.stream({ input: 'hi', temperature: 'hot' }), isRillError(Status.INVALID_REQUEST, /temperature/));
});

test('a prompt longer than max_model_len: CONTEXT_LENGTH_EXCEEDED', async () => {
  const small = new Engine({ ...CONFIG, max_model_len: 16 });
  try {
    assert.throws(() => small.stream({ input: 'word '.repeat(100) }), isRillError(Status.CONTEXT_LENGTH_EXCEEDED, /./));
  } finally {
    await within(30000, small.close(), 'close');
  }
});

test('create rejects with the RillError', async () => {
  await assert.rejects(engine.create({ input: '' }), isRillError(Status.INVALID_REQUEST, /`input`/));
  await assert.rejects(engine.create({ input: 'hi', max_output_tokens: -5 }), isRillError(Status.INVALID_REQUEST, /max_output_tokens/));
});

test('a request or signal of the wrong kind: TypeError', () => {
  assert.throws(() => engine.stream(null), TypeError);
  assert.throws(() => engine.stream(7), TypeError);
  assert.throws(() => engine.stream(FRANCE, { signal: 'abort' }), TypeError);
});

test('refused requests queue nothing and the engine keeps serving', { timeout: 60000 }, async () => {
  const before = engine.stats().requests.submitted;
  assert.throws(() => engine.stream({ input: '' }), RillError);
  assert.throws(() => engine.stream('{'), RillError);
  assert.strictEqual(engine.stats().requests.submitted, before, 'refused requests are not counted as submitted');
  const response = await engine.create(FRANCE);
  assert.strictEqual(response.status, 'completed');
  assert.match(response.output[0].content[0].text, /Paris/);
});

const run = promisify(execFile);
const script = `const { Engine, libraryPath } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
console.log(libraryPath());
const e = new Engine({ model: ${JSON.stringify(MODEL)}, num_threads: 1 });
e.close().then(() => console.log('ok'));`;

function childEnv(extra) {
  const env = { ...process.env };
  delete env.RILL_LIB;
  delete env.RILL_LIB_DIR;
  return { ...env, ...extra };
}

test('RILL_LIB names the library; a missing one gives a clear error', { timeout: 60000 }, async () => {
  const { libraryPath } = require('..');
  const real = libraryPath();
  const ok = await run(process.execPath, ['-e', script], { env: childEnv({ RILL_LIB: real }) });
  assert.deepStrictEqual(ok.stdout.trim().split('\n'), [real, 'ok']);
  await assert.rejects(run(process.execPath, ['-e', script], { env: childEnv({ RILL_LIB: '/nonexistent/librill.so' }) }), (e) => {
    assert.notStrictEqual(e.code, 0);
    assert.match(e.stderr, /cannot load the rill library \/nonexistent\/librill\.so/);
    return true;
  });
});

test('RILL_LIB_DIR names the directory of librill.so', { timeout: 60000 }, async () => {
  const { libraryPath } = require('..');
  const dir = path.dirname(libraryPath());
  const ok = await run(process.execPath, ['-e', script], { env: childEnv({ RILL_LIB_DIR: dir }) });
  assert.deepStrictEqual(ok.stdout.trim().split('\n'), [path.join(dir, 'librill.so'), 'ok']);
  await assert.rejects(run(process.execPath, ['-e', script], { env: childEnv({ RILL_LIB_DIR: '/nonexistent' }) }), /cannot load the rill library \/nonexistent\/librill\.so/);
});

test('without RILL_LIB and RILL_LIB_DIR the library is ../../target/release/librill.so', { timeout: 30000 }, async () => {
  const pkg = path.resolve(__dirname, '..');
  const { stdout } = await run(process.execPath, ['-e', `console.log(require(${JSON.stringify(pkg)}).libraryPath())`], { env: childEnv({}) });
  assert.strictEqual(stdout.trim(), path.resolve(pkg, '..', '..', 'target', 'release', 'librill.so'));
});
