// The README's Node snippet runs as written against a real server (only the address and the
// file it opens are provided).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../lib/server.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const README = resolve(HERE, '..', '..', '..', 'README.md');
const README_ADDRESS = 'http://127.0.0.1:8321';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('the README Node snippet runs', () => {
  const text = readFileSync(README, 'utf8');
  const at = text.indexOf('### Use it from Node');
  assert.ok(at >= 0);
  const m = /```js\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(m, 'no js block');
  assert.ok(m[1].includes(README_ADDRESS));
  const code = m[1].replaceAll(README_ADDRESS, server.root);
  const work = mkdtempSync(join(tmpdir(), 'ragstore-readme-'));
  writeFileSync(
    join(work, 'handbook.md'),
    '# Operations handbook\n\nTo rotate the TLS certificates, run `certbot renew` on each load balancer and reload nginx.\n',
  );
  // Written beside the suite so that `openai` resolves from its node_modules.
  const script = join(HERE, '..', `.readme-${process.pid}.mjs`);
  writeFileSync(script, code);
  try {
    const out = execFileSync(process.execPath, [script], { cwd: work, encoding: 'utf8', timeout: 120_000 });
    assert.match(out, /handbook\.md/);
    assert.match(out, /certbot/);
  } finally {
    rmSync(script, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
});
