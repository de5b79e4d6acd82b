// The processes a browser test runs: the real chatd binary, and the user-search
// stand-in. Each listens on 127.0.0.1 only. chatd gets a fresh temporary data
// directory (also its working directory, so no .env is read) and an environment
// without any chatd setting from the developer's shell.

import assert from 'node:assert/strict';
import {execFileSync, spawn} from 'node:child_process';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const STARTUP_TIMEOUT_MS = 20_000;
const SHUTDOWN_TIMEOUT_MS = 15_000;
const LISTENING = /listening on http:\/\/127\.0\.0\.1:(\d+)/;

const running = new Set(); // every child still alive, killed if the test process dies first
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export function chatdBinary() {
  return process.env.CHATD_BIN || path.join(REPO_ROOT, 'build', 'chatd');
}

let settingNames = null;

/** process.env less every variable chatd reads (those `chatd --help` names as "(Env:NAME)"). */
function cleanEnvironment(binary) {
  settingNames ??= new Set(
    [...execFileSync(binary, ['--help'], {encoding: 'utf8'}).matchAll(/\(Env:([A-Za-z0-9_]+)\)/g)].map(
      (match) => match[1],
    ),
  );
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !settingNames.has(key) && !key.startsWith('CHATD_')),
  );
}

/**
 * Runs `child` with its output (stdout and stderr) collected; `waitFor(pattern)`
 * resolves with the first match in it, and rejects if the process exits first.
 */
class Collected {
  text = '';

  constructor(child, describe) {
    this.child = child;
    this.describe = describe;
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        this.text += chunk;
      });
    }
  }

  waitFor(pattern) {
    return new Promise((resolve, reject) => {
      const streams = [this.child.stdout, this.child.stderr].filter(Boolean);
      const check = () => {
        const match = this.text.match(pattern);
        if (match) finish(null, match);
      };
      const onExit = (code) => finish(new Error(`${this.describe()}: exited with code ${code} before it was ready\n${this.text}`));
      const timer = setTimeout(
        () => finish(new Error(`${this.describe()}: printed nothing matching ${pattern} in time\n${this.text}`)),
        STARTUP_TIMEOUT_MS,
      );
      const finish = (error, match) => {
        clearTimeout(timer);
        for (const stream of streams) stream.off('data', check);
        this.child.off('exit', onExit);
        if (error) reject(error);
        else resolve(match);
      };
      for (const stream of streams) stream.on('data', check);
      this.child.on('exit', onExit);
      check();
    });
  }
}

function exited(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({code: child.exitCode, signal: child.signalCode});
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({code: null, signal: 'timeout'});
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({code, signal});
    });
  });
}

export class Chatd {
  #child;
  #output;

  /**
   * Starts chatd and waits until /readyz answers 200.
   * @param {object} [options]
   * @param {string[]} [options.args]  more flags (--history-limit 20, --secret-key …)
   * @param {number} [options.port]    0: a free port; the same port again for a restart
   * @param {string} [options.dataDir] an existing data directory (a restart); default: a new one
   */
  static async start({args = [], port = 0, dataDir} = {}) {
    const chatd = new Chatd(args, port, dataDir ?? mkdtempSync(path.join(tmpdir(), 'chatd-browser-')));
    try {
      const listening = await chatd.#output.waitFor(LISTENING);
      chatd.port = Number(listening[1]);
      await chatd.#pollReady();
    } catch (error) {
      chatd.#child.kill('SIGKILL'); // a chatd that did not start must not outlive the test
      throw error;
    }
    return chatd;
  }

  constructor(args, port, dataDir) {
    this.args = args;
    this.dataDir = dataDir;
    this.port = port;
    const binary = chatdBinary();
    const command = ['--host', '127.0.0.1', '--port', String(port),
      '--sqlite-path', path.join(dataDir, 'chat.db'), ...args];
    this.#child = spawn(binary, command, {
      cwd: dataDir,
      env: cleanEnvironment(binary),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(this.#child);
    this.#child.on('exit', () => running.delete(this.#child));
    this.#output = new Collected(this.#child, () => `chatd ${command.join(' ')}`);
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The last `lines` lines chatd printed, for failure messages. */
  logTail(lines = 40) {
    return this.#output.text.split('\n').slice(-lines).join('\n');
  }

  /** /readyz answers 200 once the store (and the user-search service, if any) is reachable. */
  async #pollReady() {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let last = 'no answer';
    while (Date.now() < deadline) {
      assert.equal(this.#child.exitCode, null, `chatd exited before it was ready\n${this.logTail()}`);
      try {
        const response = await fetch(`${this.url}/readyz`);
        last = `${response.status} ${await response.text()}`;
        if (response.ok) return;
      } catch (error) {
        last = String(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`chatd not ready in time (last /readyz: ${last})\n${this.logTail()}`);
  }

  /** SIGTERM, and the exit code must be 0 (a clean drain). */
  async stop() {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGTERM');
    const {code, signal} = await exited(this.#child, SHUTDOWN_TIMEOUT_MS);
    assert.equal(code, 0, `chatd exited with ${code ?? signal} after SIGTERM\n${this.logTail()}`);
  }

  /** Removes the data directory (after stop()). */
  removeData() {
    rmSync(this.dataDir, {recursive: true, force: true});
  }

  /** POST /api/chats/{sender}/{peer}/messages: a message from `sender` (no tokens: user1 is the caller). */
  async post(sender, peer, text, clientId) {
    const response = await fetch(`${this.url}/api/chats/${encodeURIComponent(sender)}/${encodeURIComponent(peer)}/messages`, {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({client_id: clientId, text}),
    });
    assert.ok(response.ok, `POST ${text}: ${response.status} ${await response.clone().text()}`);
    return response.json();
  }
}

/** The user-search stand-in; `unknown` names do not exist. */
export class UserSearchStub {
  #child;
  #output;

  static async start(unknown) {
    const stub = new UserSearchStub(unknown);
    stub.url = (await stub.#output.waitFor(/(http:\/\/127\.0\.0\.1:\d+\/\S+)/))[1];
    return stub;
  }

  constructor(unknown) {
    const script = path.join(REPO_ROOT, 'tests/browser/lib/user_search_stub_server.py');
    this.#child = spawn('/usr/bin/python3', [script, ...unknown], {stdio: ['pipe', 'pipe', 'pipe']});
    running.add(this.#child);
    this.#child.on('exit', () => running.delete(this.#child));
    this.#output = new Collected(this.#child, () => 'user-search stub');
  }

  async stop() {
    this.#child.stdin.end();
    const {code, signal} = await exited(this.#child, SHUTDOWN_TIMEOUT_MS);
    assert.equal(code, 0, `user-search stub exited with ${code ?? signal}\n${this.#output.text}`);
  }
}
