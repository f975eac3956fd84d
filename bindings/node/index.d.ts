// Type declarations of rill-node, the Node.js binding of rill (include/rill.h).

/** rill's status codes (`RillStatus` in include/rill.h). */
export declare const Status: Readonly<{
  OK: 0;
  NO_EVENT: 1;
  NULL_ARGUMENT: 2;
  INVALID_UTF8: 3;
  INVALID_JSON: 4;
  INVALID_CONFIG: 5;
  INVALID_REQUEST: 6;
  CONTEXT_LENGTH_EXCEEDED: 7;
  IO: 8;
  MODEL: 9;
  UNKNOWN_REQUEST: 10;
  ENGINE_POISONED: 11;
  WRONG_THREAD: 12;
  INTERNAL: 13;
  DEVICE: 14;
}>;

export type StatusName = keyof typeof Status;

/** The ABI version of include/rill.h this binding was written against. */
export declare const ABI_VERSION: 1;

/** The name of a status code, e.g. `6` -> `"INVALID_REQUEST"` (`"UNKNOWN"` otherwise). */
export declare function statusName(status: number): StatusName | 'UNKNOWN';

/** The library version, e.g. `"0.1.0"`. */
export declare function version(): string;

/** The ABI version of the loaded library. */
export declare function abiVersion(): number;

/** Where the library is loaded from: `RILL_LIB`, else `RILL_LIB_DIR/librill.so`, else
 * `../../target/release/librill.so` relative to the package. */
export declare function libraryPath(): string;

/** A failed rill call. */
export declare class RillError extends Error {
  constructor(status: number, message: string);
  readonly name: 'RillError';
  /** rill's status code (see `Status`). */
  readonly status: number;
  /** The status code's name, e.g. `"INVALID_REQUEST"`. */
  readonly statusName: StatusName | 'UNKNOWN';
  /** rill's message (`rill_last_error()`), e.g. "request field `input`: must not be empty". */
  readonly message: string;
}

/** The engine config (see rill's README, "Engine config"). */
export interface EngineConfig {
  /** Path to a `.gguf` file or a Hugging Face checkpoint directory. */
  model: string;
  device?: 'cpu' | 'auto' | (string & {});
  num_threads?: number;
  max_num_seqs?: number;
  max_model_len?: number;
  max_num_batched_tokens?: number;
  seed?: number;
  /** Tokens per KV block (default 16). */
  block_size?: number;
  /** KV cache memory in bytes (not with `kv_cache_memory_fraction`). */
  kv_cache_bytes?: number;
  /** KV cache as a fraction of the available memory, in (0, 0.95]. */
  kv_cache_memory_fraction?: number;
  /** Reuse the KV of shared prompt prefixes (default true). */
  enable_prefix_caching?: boolean;
  /** `<think>` parsing: detected from the model (`auto`), off, or on. */
  reasoning_parser?: 'auto' | 'none' | 'think';
  /** Hermes `<tool_call>` parsing: detected from the model (`auto`), off, or on. */
  tool_call_parser?: 'auto' | 'none' | 'hermes';
  generation_config?: {
    temperature?: number;
    top_p?: number;
    top_k?: number;
    min_p?: number;
    max_output_tokens?: number;
  };
}

export type Role = 'user' | 'system' | 'developer' | 'assistant';

export interface InputText {
  type: 'input_text';
  text: string;
}

export interface InputMessage {
  type?: 'message';
  role: Role;
  content: string | InputText[] | OutputText[];
}

/** A call the model made, sent back in the next turn. */
export interface FunctionCallItem {
  type: 'function_call';
  call_id: string;
  name: string;
  /** The arguments as JSON text. */
  arguments: string;
  id?: string;
  status?: string;
}

/** The result of a call, for the next turn. */
export interface FunctionCallOutputItem {
  type: 'function_call_output';
  call_id: string;
  output: string | InputText[];
  id?: string;
  status?: string;
}

/** Reasoning replayed into the next turn. */
export interface ReasoningInputItem {
  type: 'reasoning';
  id?: string;
  summary?: { type: string; text: string }[];
  content?: { type: 'reasoning_text'; text: string }[];
  status?: string;
}

export type InputItem = InputMessage | FunctionCallItem | FunctionCallOutputItem | ReasoningInputItem;

/** A function the model may call. `strict: true` is refused (no constrained decoding). */
export interface FunctionTool {
  type: 'function';
  name: string;
  description?: string | null;
  parameters?: Record<string, unknown> | null;
  strict?: false | null;
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; name: string };

/** A Responses API request body (see rill's README, "Requests"). Unknown fields are
 * refused by rill with `INVALID_REQUEST`. */
export interface ResponseRequest {
  input: string | InputItem[];
  instructions?: string | null;
  max_output_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  metadata?: Record<string, string> | null;
  reasoning?: { effort?: string | null } | null;
  tools?: FunctionTool[] | null;
  tool_choice?: ToolChoice | null;
  include?: 'message.output_text.logprobs'[] | null;
  top_logprobs?: number | null;
  user?: string;
  parallel_tool_calls?: boolean;
  stream?: boolean;
  store?: boolean;
  model?: string;
  /** rill extensions. */
  top_k?: number;
  min_p?: number;
  seed?: number;
  ignore_eos?: boolean;
  stop?: string | string[];
  repetition_penalty?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  /** The chat template's `enable_thinking` (Qwen3). */
  enable_thinking?: boolean;
}

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: unknown[];
  [key: string]: unknown;
}

export interface OutputMessage {
  type: 'message';
  id: string;
  role: 'assistant';
  status: 'in_progress' | 'completed' | 'incomplete';
  content: OutputText[];
  [key: string]: unknown;
}

export interface ReasoningText {
  type: 'reasoning_text';
  text: string;
}

export interface ReasoningItem {
  type: 'reasoning';
  id: string;
  summary: unknown[];
  content: ReasoningText[];
  status: 'in_progress' | 'completed' | 'incomplete';
}

export interface FunctionCallOutput {
  type: 'function_call';
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: 'in_progress' | 'completed' | 'incomplete';
}

export type OutputItem = OutputMessage | ReasoningItem | FunctionCallOutput;

/** A Responses API Response object. */
export interface Response {
  id: string;
  object: 'response';
  created_at: number;
  model: string;
  status: 'in_progress' | 'completed' | 'incomplete' | 'cancelled' | 'failed';
  output: OutputItem[];
  incomplete_details: { reason: string } | null;
  error: { code: string; message: string } | null;
  usage?: {
    input_tokens: number;
    output_tokens: number;
    total_tokens: number;
    [key: string]: unknown;
  } | null;
  [key: string]: unknown;
}

interface EventBase {
  sequence_number: number;
}

export interface ResponseLifecycleEvent extends EventBase {
  type: 'response.created' | 'response.in_progress';
  response: Response;
}

/** The last event of every stream (`is_last` in rill). */
export interface TerminalEvent extends EventBase {
  type: 'response.completed' | 'response.incomplete' | 'response.failed';
  response: Response;
}

export interface OutputTextDeltaEvent extends EventBase {
  type: 'response.output_text.delta' | 'response.reasoning_text.delta';
  item_id: string;
  output_index: number;
  content_index: number;
  delta: string;
  [key: string]: unknown;
}

export interface OutputTextDoneEvent extends EventBase {
  type: 'response.output_text.done' | 'response.reasoning_text.done';
  item_id: string;
  output_index: number;
  content_index: number;
  text: string;
  [key: string]: unknown;
}

export interface OutputItemEvent extends EventBase {
  type: 'response.output_item.added' | 'response.output_item.done';
  output_index: number;
  item: OutputItem;
}

export interface ContentPartEvent extends EventBase {
  type: 'response.content_part.added' | 'response.content_part.done';
  item_id: string;
  output_index: number;
  content_index: number;
  part: OutputText | ReasoningText;
}

export interface FunctionCallArgumentsDeltaEvent extends EventBase {
  type: 'response.function_call_arguments.delta';
  item_id: string;
  output_index: number;
  delta: string;
}

export interface FunctionCallArgumentsDoneEvent extends EventBase {
  type: 'response.function_call_arguments.done';
  item_id: string;
  output_index: number;
  name: string;
  arguments: string;
}

/** One event of a stream: a parsed JSON object, discriminated by `type`. */
export type StreamEvent =
  | ResponseLifecycleEvent
  | TerminalEvent
  | OutputTextDeltaEvent
  | OutputTextDoneEvent
  | OutputItemEvent
  | ContentPartEvent
  | FunctionCallArgumentsDeltaEvent
  | FunctionCallArgumentsDoneEvent;

/** What the binding needs of an AbortSignal (a DOM/Node `AbortSignal` fits). */
export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export interface RequestOptions {
  /** Cancels the request in rill when aborted; the stream still ends with its terminal
   * event (`response.incomplete`, response.status `cancelled`). */
  signal?: AbortSignalLike | null;
}

/** The events of one request, ending after the terminal event. Single consumer. */
export declare class RillStream implements AsyncIterableIterator<StreamEvent> {
  private constructor();
  /** The request id rill assigned. */
  readonly id: number | bigint;
  /** Whether the terminal event has been received from rill (it may still be buffered). */
  readonly finished: boolean;
  /** Cancels the request; the stream still ends with its terminal event. */
  cancel(): void;
  next(): Promise<IteratorResult<StreamEvent, undefined>>;
  /** Called by `break` in `for await`: cancels the request if it runs and discards the
   * rest of its events. */
  return(value?: unknown): Promise<IteratorResult<StreamEvent, undefined>>;
  [Symbol.asyncIterator](): this;
}

/** Engine statistics (rill_engine_stats). */
export interface EngineStats {
  model: string;
  model_name: string;
  architecture: string;
  device: string;
  kernels: string;
  num_threads: number;
  max_num_seqs: number;
  max_model_len: number;
  max_num_batched_tokens: number;
  weight_bytes: number;
  load_ms: number;
  requests: {
    submitted: number;
    completed: number;
    incomplete: number;
    cancelled: number;
    failed: number;
    running: number;
    waiting: number;
  };
  tokens: { prompt: number; generated: number; cached_prompt: number };
  steps: number;
  preemptions: number;
  kv_cache: {
    bytes: number;
    num_blocks: number;
    block_size: number;
    max_tokens: number;
    prefix_caching: boolean;
    free_blocks: number;
    cached_blocks: number;
  };
  poisoned: string | null;
  [key: string]: unknown;
}

/** A rill engine: a loaded model and its threads. Call `close()` when done. */
export declare class Engine {
  /** Creates the engine and loads its model (synchronously). Throws `RillError`
   * (`INVALID_CONFIG`, `IO`, `MODEL`, ...). `config` may also be a JSON string. */
  constructor(config: EngineConfig | string);
  /** Whether `close()` has been called. */
  readonly closed: boolean;
  /** Submits a request and returns its events. Throws `RillError` if rill refuses it
   * (nothing is queued then), or an Error with code `ERR_RILL_CLOSED` after `close()`. */
  stream(request: ResponseRequest | string, options?: RequestOptions): RillStream;
  /** Submits a request and resolves to the terminal event's `response` (any status).
   * Rejects with `RillError` if rill refuses it. */
  create(request: ResponseRequest | string, options?: RequestOptions): Promise<Response>;
  /** Engine information and counters. */
  stats(): EngineStats;
  /** Cancels open requests, delivers their terminal events to their streams, waits for
   * polls in flight, then destroys the engine. Idempotent (same promise every call). */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
