// Type-checked (never run) by test/types.test.js: index.d.ts describes the API as used,
// and refuses misuse (every @ts-expect-error must be an error, or tsc fails).
import rill = require('../..');
import { Engine, RillError, Status, type EngineStats, type Response, type StreamEvent } from '../..';

async function main(): Promise<void> {
  const engine = new Engine({ model: 'm.gguf', num_threads: 2, generation_config: { temperature: 0.7 } });
  const controller = new AbortController();
  const stream = engine.stream({ input: 'Hi', temperature: 0, max_output_tokens: 8 }, { signal: controller.signal });
  const id: number | bigint = stream.id;
  for await (const event of stream) {
    const e: StreamEvent = event;
    if (e.type === 'response.output_text.delta') {
      const d: string = e.delta;
      void d;
    }
    if (e.type === 'response.completed' || e.type === 'response.incomplete' || e.type === 'response.failed') {
      const item = e.response.output[0];
      if (item.type === 'message') {
        const text: string = item.content[0].text;
        void text;
      } else if (item.type === 'function_call') {
        const args: string = item.arguments;
        void args;
      }
    }
    if (e.type === 'response.function_call_arguments.done') {
      const call: [string, string] = [e.name, e.arguments];
      void call;
    }
  }
  const response: Response = await engine.create({ input: [{ role: 'user', content: 'Hi' }], ignore_eos: true });
  const tool = { type: 'function' as const, name: 'get_weather', parameters: { type: 'object' } };
  await engine.create({
    input: [
      { role: 'user', content: 'Weather in Paris?' },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city": "Paris"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
    ],
    tools: [tool],
    tool_choice: { type: 'function', name: 'get_weather' },
    enable_thinking: false,
  });
  // @ts-expect-error: strict function tools are refused by rill
  await engine.create({ input: 'x', tools: [{ ...tool, strict: true }] });
  const status: 'in_progress' | 'completed' | 'incomplete' | 'cancelled' | 'failed' = response.status;
  const stats: EngineStats = engine.stats();
  const running: number = stats.requests.running;
  await engine.create('{"input": "raw JSON"}');
  try {
    engine.stream({ input: '' });
  } catch (err) {
    if (err instanceof RillError) {
      const s: number = err.status;
      const name: string = err.statusName;
      const m: string = err.message;
      void [s, name, m];
    }
  }
  const invalid: 6 = Status.INVALID_REQUEST;
  const v: string = rill.version();
  await engine.close();
  void [id, status, running, invalid, v];

  {
    await using scoped = new Engine({ model: 'm.gguf' });
    void scoped;
  }

  // @ts-expect-error: model is required
  new Engine({ num_threads: 2 });
  // @ts-expect-error: input is required
  engine.stream({ temperature: 0 });
  // @ts-expect-error: a request is an object or a string
  engine.stream(42);
  // @ts-expect-error: close() is async
  const closed: void = engine.close();
  // @ts-expect-error: a signal is an AbortSignal
  engine.stream({ input: 'x' }, { signal: 'abort' });
  // @ts-expect-error: a Response's status is a string
  const n: number = response.status;
  // @ts-expect-error: a stream yields events, not strings
  for await (const e of engine.stream('{}')) e.toUpperCase();
  void [closed, n];
}
void main;
