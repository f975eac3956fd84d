'use strict';
// Shared by the tests: the model and library locations, and small stream helpers.
const path = require('node:path');
const fs = require('node:fs');

const root = path.resolve(__dirname, '..', '..', '..');
const MODEL = process.env.RILL_MODEL || path.join(root, 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf');
if (!fs.existsSync(MODEL)) throw new Error(`model not found: ${MODEL} (set RILL_MODEL)`);

const CONFIG = Object.freeze({ model: MODEL, num_threads: 2 });
const FRANCE = Object.freeze({ input: 'Name the capital of France.', temperature: 0, max_output_tokens: 32 });
/** Runs until cancelled (or the engine is closed). */
const ENDLESS = Object.freeze({ input: 'Tell me a very long story about a dragon.', temperature: 0, ignore_eos: true });
const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** Resolves to `promise`, or rejects after `ms` (so that a hang fails the test). */
function within(ms, promise, what = 'operation') {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Checks one whole stream's invariants and returns {terminal, text}: sequence numbers
 * 0..n-1, created then in_progress first, exactly one terminal event and it is last,
 * and the deltas add up to the final text. */
function checkStream(assert, events) {
  assert.ok(events.length >= 3, `only ${events.length} events`);
  events.forEach((e, i) => assert.strictEqual(e.sequence_number, i, `event ${i} has sequence_number ${e.sequence_number}`));
  assert.strictEqual(events[0].type, 'response.created');
  assert.strictEqual(events[1].type, 'response.in_progress');
  const terminals = events.filter((e) => TERMINAL.has(e.type));
  assert.strictEqual(terminals.length, 1, 'exactly one terminal event');
  const terminal = events[events.length - 1];
  assert.ok(TERMINAL.has(terminal.type), `last event is ${terminal.type}`);
  const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  const text = terminal.response.output[0]?.content[0]?.text ?? '';
  assert.strictEqual(deltas, text, 'the deltas add up to the final text');
  return { terminal, text };
}

module.exports = { root, MODEL, CONFIG, FRANCE, ENDLESS, TERMINAL, within, checkStream };
