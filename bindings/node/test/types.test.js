'use strict';
// index.d.ts: tsc (strict) type-checks test/types/usage.ts against the package's types.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');

test('index.d.ts type-checks the documented usage and refuses misuse', { timeout: 120000 }, async () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const project = path.join(__dirname, 'types', 'tsconfig.json');
  const result = await promisify(execFile)(process.execPath, [tsc, '-p', project, '--pretty', 'false']).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e) => ({ code: e.code, out: `${e.stdout}${e.stderr}` }),
  );
  assert.strictEqual(result.code, 0, `tsc failed:\n${result.out}`);
});
