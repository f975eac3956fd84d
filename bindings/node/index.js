'use strict';
// rill-node: the Node.js binding of rill's C API (include/rill.h), through koffi.
//
// Threads: engine creation, submit, cancel and stats are short synchronous calls on the
// main thread (a failing call and its rill_last_error() run on the same thread). Waiting
// for events never blocks the event loop: each pending read of a stream is one
// rill_engine_poll_request call with a short timeout, run on the libuv thread pool through
// koffi's fn.async(); its only failures are NO_EVENT and UNKNOWN_REQUEST, which need no
// rill_last_error(). Destroy also runs on the thread pool, after every poll has returned.

const path = require('node:path');
const koffi = require('koffi');

/** ABI version of include/rill.h this binding was written against. */
const ABI_VERSION = 1;
/** How long one pending poll waits in rill before it returns NO_EVENT (ms). */
const POLL_TIMEOUT_MS = 100;

const Status = Object.freeze({
  OK: 0,
  NO_EVENT: 1,
  NULL_ARGUMENT: 2,
  INVALID_UTF8: 3,
  INVALID_JSON: 4,
  INVALID_CONFIG: 5,
  INVALID_REQUEST: 6,
  CONTEXT_LENGTH_EXCEEDED: 7,
  IO: 8,
  MODEL: 9,
  UNKNOWN_REQUEST: 10,
  ENGINE_POISONED: 11,
  WRONG_THREAD: 12,
  INTERNAL: 13,
  DEVICE: 14,
});
const STATUS_NAMES = Object.freeze(Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k])));

const TERMINAL_TYPES = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** The name of a status code, e.g. 6 -> "INVALID_REQUEST" ("UNKNOWN" for other codes). */
function statusName(status) {
  return STATUS_NAMES[status] ?? 'UNKNOWN';
}

/** A failed rill call: `status` is rill's status code, `message` rill's message. */
class RillError extends Error {
  constructor(status, message) {
    super(message || `rill: ${statusName(status)}`);
    this.name = 'RillError';
    this.status = status;
    this.statusName = statusName(status);
  }
}

// ---- the library ----------------------------------------------------------------------

/** Where librill.so is: RILL_LIB, else RILL_LIB_DIR/librill.so, else the repository's
 * target/release/librill.so (../../target/release relative to this package). */
function libraryPath() {
  if (process.env.RILL_LIB) return path.resolve(process.env.RILL_LIB);
  const dir = process.env.RILL_LIB_DIR || path.join(__dirname, '..', '..', 'target', 'release');
  return path.resolve(dir, 'librill.so');
}

let ffi = null;

function lib() {
  if (ffi) return ffi;
  const file = libraryPath();
  let l;
  try {
    l = koffi.load(file);
  } catch (e) {
    throw new Error(`rill-node: cannot load the rill library ${file} (set RILL_LIB or RILL_LIB_DIR): ${e.message}`);
  }
  const RillEngine = koffi.opaque('RillEngine');
  const f = {
    file,
    create: l.func('int32_t rill_engine_create(const char *config_json, _Out_ RillEngine **out_engine)'),
    destroy: l.func('int32_t rill_engine_destroy(RillEngine *engine)'),
    // The callback is always NULL (events are polled), so it is declared as void *.
    submit: l.func(
      'int32_t rill_engine_submit(RillEngine *engine, const char *request_json, void *callback, void *user_data, _Out_ uint64_t *out_request_id)',
    ),
    // Returned strings are taken as raw pointers (void *) so that they can be freed.
    pollRequest: l.func(
      'int32_t rill_engine_poll_request(RillEngine *engine, uint64_t request_id, int32_t timeout_ms, _Out_ void **out_event_json, _Out_ bool *out_is_last)',
    ),
    cancel: l.func('int32_t rill_engine_cancel(RillEngine *engine, uint64_t request_id)'),
    stats: l.func('int32_t rill_engine_stats(RillEngine *engine, _Out_ void **out_json)'),
    stringFree: l.func('void rill_string_free(void *s)'),
    statusStr: l.func('const char *rill_status_str(int32_t status)'),
    lastError: l.func('const char *rill_last_error(void)'),
    version: l.func('const char *rill_version(void)'),
    abiVersion: l.func('uint32_t rill_abi_version(void)'),
  };
  const abi = f.abiVersion();
  if (abi !== ABI_VERSION) {
    throw new Error(`rill-node: ${file} has ABI version ${abi}, this binding needs ${ABI_VERSION}`);
  }
  ffi = f;
  return f;
}

/** Takes a rill-owned string: decodes it as UTF-8 and frees it with rill_string_free. */
function takeString(f, ptr) {
  try {
    return koffi.decode(ptr, 'char', -1);
  } finally {
    f.stringFree(ptr);
  }
}

/** Throws RillError for a failed synchronous call (rill_last_error on this same thread). */
function check(f, status) {
  if (status !== Status.OK) throw new RillError(status, f.lastError());
}

function toJson(what, value) {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object') {
    throw new TypeError(`rill-node: ${what} must be an object or a JSON string`);
  }
  return JSON.stringify(value);
}

function closedError() {
  const e = new Error('rill-node: the engine is closed');
  e.code = 'ERR_RILL_CLOSED';
  return e;
}

// ---- streams --------------------------------------------------------------------------

/** The events of one request: an async iterable (and iterator) of parsed event objects,
 * ending after the terminal event. */
class RillStream {
  #engine;
  #state;
  #chain = Promise.resolve();

  /** @internal */
  constructor(engine, state) {
    this.#engine = engine;
    this.#state = state;
  }

  /** The request id rill assigned. */
  get id() {
    return this.#state.id;
  }

  /** Whether the terminal event has been received from rill (it may still be buffered). */
  get finished() {
    return this.#state.done;
  }

  /** Cancels the request in rill; the stream still ends with its terminal event. */
  cancel() {
    this.#engine._cancel(this.#state);
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** The next event ({done: true} after the terminal event). Calls are served in order. */
  next() {
    const p = this.#chain.then(() => this.#next());
    this.#chain = p.then(
      () => {},
      () => {},
    );
    return p;
  }

  async #next() {
    const s = this.#state;
    for (;;) {
      if (s.buffer.length > 0) return { value: s.buffer.shift(), done: false };
      if (s.error) {
        const e = s.error;
        s.error = null;
        s.detached = true;
        throw e;
      }
      if (s.done) return { value: undefined, done: true };
      await this.#engine._pump(s);
    }
  }

  /** Stops iterating (a `break` out of `for await`): cancels the request if it has not
   * ended and drains its remaining events in the background, discarding them. */
  async return(value) {
    const s = this.#state;
    s.detached = true;
    s.buffer.length = 0;
    if (!s.done) {
      this.#engine._cancel(s);
      this.#engine._drain(s);
    }
    return { value, done: true };
  }
}

// ---- the engine -----------------------------------------------------------------------

class Engine {
  #f;
  #handle;
  #closing = null;
  /** Requests submitted by this engine whose terminal event has not been polled yet. */
  #open = new Set();
  #inflight = 0;
  #idle = [];

  /** Creates an engine and loads its model. `config` is the engine config (an object or
   * a JSON string): `{model, num_threads, ...}`. Throws RillError. */
  constructor(config) {
    const f = lib();
    const json = toJson('config', config);
    const out = [null];
    check(f, f.create(json, out));
    this.#f = f;
    this.#handle = out[0];
  }

  /** Whether close() has been called. */
  get closed() {
    return this.#closing !== null;
  }

  #live() {
    if (this.#closing !== null || this.#handle === null) throw closedError();
    return this.#handle;
  }

  /** Submits a request (a Responses API body, as an object or a JSON string) and returns
   * its stream of events. Throws RillError if rill refuses it (nothing is queued then).
   * `signal` (an AbortSignal) cancels the request in rill; the stream still ends with the
   * terminal event (`response.incomplete`, response.status `cancelled`). */
  stream(request, options = {}) {
    const signal = options?.signal;
    if (signal != null && (typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function')) {
      throw new TypeError('rill-node: options.signal must be an AbortSignal');
    }
    const handle = this.#live();
    const json = toJson('request', request);
    const f = this.#f;
    const out = [null];
    check(f, f.submit(handle, json, null, null, out));
    const state = {
      id: out[0],
      buffer: [],
      done: false,
      error: null,
      detached: false,
      cancelled: false,
      polling: null,
      unlisten: null,
    };
    this.#open.add(state);
    if (signal != null) {
      if (signal.aborted) {
        this._cancel(state);
      } else {
        const onAbort = () => this._cancel(state);
        signal.addEventListener('abort', onAbort, { once: true });
        state.unlisten = () => signal.removeEventListener('abort', onAbort);
      }
    }
    return new RillStream(this, state);
  }

  /** Submits a request and resolves to its final Response object (the terminal event's
   * `response`, whatever its status). Rejects with RillError if rill refuses it.
   *
   * This reads the stream rather than calling rill_engine_generate: that blocking call
   * would hold a libuv pool thread for the whole generation, could not be cancelled by
   * `signal` or close() (it returns no request id), and would report a refusal's message
   * through rill_last_error() on the pool thread, where it cannot be read. */
  async create(request, options = {}) {
    let terminal = null;
    for await (const event of this.stream(request, options)) {
      if (TERMINAL_TYPES.has(event.type)) terminal = event;
    }
    if (terminal === null) throw new Error('rill-node: the stream ended without a terminal event');
    return terminal.response;
  }

  /** Engine information and counters (parsed JSON from rill_engine_stats). */
  stats() {
    const handle = this.#live();
    const f = this.#f;
    const out = [null];
    check(f, f.stats(handle, out));
    return JSON.parse(takeString(f, out[0]));
  }

  /** Closes the engine: cancels every open request, drains their events up to the
   * terminal event (still delivered to their streams), waits for every poll in flight to
   * return, then destroys the engine on the thread pool. Idempotent: every call returns
   * the same promise. */
  close() {
    if (this.#closing === null) this.#closing = this.#close();
    return this.#closing;
  }

  async #close() {
    // Let the caller's synchronous code run first (close() itself never blocks).
    await null;
    for (const s of this.#open) this._cancel(s);
    while (this.#open.size > 0) {
      await Promise.all([...this.#open].map((s) => this._pump(s)));
    }
    while (this.#inflight > 0) await new Promise((resolve) => this.#idle.push(resolve));
    const handle = this.#handle;
    this.#handle = null;
    const status = await new Promise((resolve, reject) =>
      this.#f.destroy.async(handle, (err, res) => (err ? reject(err) : resolve(res))),
    );
    // Destroy only fails with WRONG_THREAD (never here) or INTERNAL; its message is on the
    // pool thread that ran it, so only the status is reported.
    if (status !== Status.OK) throw new RillError(status, `rill_engine_destroy: ${this.#f.statusStr(status)}`);
  }

  async [Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')]() {
    await this.close();
  }

  /** @internal Cancels a request in rill (a no-op once it ended or the engine is gone). */
  _cancel(s) {
    if (s.done || s.cancelled || this.#handle === null) return;
    s.cancelled = true;
    // OK, or UNKNOWN_REQUEST for an id never issued (impossible here); nothing to report.
    this.#f.cancel(this.#handle, s.id);
  }

  /** @internal Drains a detached stream's events in the background. */
  _drain(s) {
    const loop = () => {
      if (!s.done) this._pump(s).then(loop);
    };
    loop();
  }

  /** @internal One pending read: polls rill (on the thread pool) for the request's next
   * event and buffers it. At most one poll per request is in flight; concurrent callers
   * share it. Resolves when the poll returns (with or without an event). */
  _pump(s) {
    if (s.polling) return s.polling;
    if (s.done) return Promise.resolve();
    const f = this.#f;
    const json = [null];
    const isLast = [null];
    this.#inflight++;
    s.polling = new Promise((resolve) => {
      const done = (err, status) => {
        this.#inflight--;
        s.polling = null;
        try {
          if (err) {
            this.#finish(s, err);
          } else if (status === Status.OK) {
            const text = takeString(f, json[0]);
            let event;
            try {
              event = JSON.parse(text);
            } catch (e) {
              event = null;
              this.#finish(s, new Error(`rill-node: event is not JSON: ${e.message}`));
            }
            if (event !== null) {
              if (!s.detached) s.buffer.push(event);
              if (isLast[0]) this.#finish(s, null);
            }
          } else if (status !== Status.NO_EVENT) {
            // UNKNOWN_REQUEST: the request is not a polled request in flight.
            this.#finish(s, new RillError(status, `rill_engine_poll_request: ${f.statusStr(status)}`));
          }
        } finally {
          if (this.#inflight === 0) for (const wake of this.#idle.splice(0)) wake();
          resolve();
        }
      };
      try {
        f.pollRequest.async(this.#handle, s.id, POLL_TIMEOUT_MS, json, isLast, done);
      } catch (e) {
        done(e, null); // koffi refused the call before it was queued
      }
    });
    return s.polling;
  }

  #finish(s, error) {
    s.done = true;
    if (error && !s.detached) s.error = error;
    this.#open.delete(s);
    if (s.unlisten) {
      s.unlisten();
      s.unlisten = null;
    }
  }
}

/** The library version, e.g. "0.1.0". */
function version() {
  return lib().version();
}

/** The ABI version of the loaded library. */
function abiVersion() {
  return lib().abiVersion();
}

module.exports = {
  Engine,
  RillError,
  RillStream,
  Status,
  statusName,
  version,
  abiVersion,
  libraryPath,
  ABI_VERSION,
};
