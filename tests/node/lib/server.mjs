// Starts `ragstore serve` for the suite: a free port, a throw-away data directory, the binary
// from RAGSTORE_BIN and the model from RAGSTORE_MODELS_DIR (both defaulting to this checkout's
// target/debug/ragstore and models/). `stop()` sends SIGTERM and checks for a clean exit.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const STARTUP_TIMEOUT_MS = 20_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;

function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function tail(path, lines = 40) {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch (e) {
    return `<could not read ${path}: ${e.message}>`;
  }
}

async function healthy(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

export async function startServer(...flags) {
  const bin = process.env.RAGSTORE_BIN || join(REPO_ROOT, 'target', 'debug', 'ragstore');
  const modelsDir = process.env.RAGSTORE_MODELS_DIR || join(REPO_ROOT, 'models');
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(`ragstore binary not executable at ${bin}; set RAGSTORE_BIN`);
  }
  const workdir = mkdtempSync(join(tmpdir(), 'ragstore-node-'));
  const logPath = join(workdir, 'server.log');
  const logFd = openSync(logPath, 'w');
  const port = await freePort();
  const root = `http://127.0.0.1:${port}`;
  // Only the flags configure the server; stray RAGSTORE_* variables must not leak in.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('RAGSTORE_')),
  );
  const args = [
    'serve',
    '--addr', `127.0.0.1:${port}`,
    '--data-dir', join(workdir, 'data'),
    '--models-dir', modelsDir,
    '--shutdown-grace-secs', '5',
    ...flags,
  ];
  const proc = spawn(bin, args, { env, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exited = null;
  const exitPromise = new Promise((res) => {
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      res(exited);
    });
  });

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      throw new Error(
        `ragstore exited (${JSON.stringify(exited)}) during startup\n--- server log ---\n${tail(logPath)}`,
      );
    }
    if (await healthy(`${root}/health`)) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`ragstore did not answer /health within ${STARTUP_TIMEOUT_MS} ms\n${tail(logPath)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  async function stop() {
    if (exited) {
      throw new Error(`ragstore died during the tests (${JSON.stringify(exited)})\n${tail(logPath)}`);
    }
    proc.kill('SIGTERM');
    let timer;
    const timeout = new Promise((r) => {
      timer = setTimeout(() => r('timeout'), SHUTDOWN_TIMEOUT_MS);
    });
    const outcome = await Promise.race([exitPromise, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      proc.kill('SIGKILL');
      await exitPromise;
      throw new Error(`ragstore did not exit within ${SHUTDOWN_TIMEOUT_MS} ms of SIGTERM\n${tail(logPath)}`);
    }
    if (outcome.code !== 0) {
      throw new Error(`ragstore exited with ${JSON.stringify(outcome)} after SIGTERM\n${tail(logPath)}`);
    }
    rmSync(workdir, { recursive: true, force: true });
  }

  return { root, stop, logPath };
}
