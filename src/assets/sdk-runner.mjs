// herdctl-container's in-container Agent SDK runner. Runs as
//   node --input-type=module -e <this file's text>
// inside an agent's container (no file of ours is needed in the image), so it stays small: the
// text travels as one argv element (the kernel caps one at 128 KiB; keep this under 16 KiB).
//
// stdin: one JSON object `{"prompt": string, "sdkOptions": object}`, read to EOF (stdin, not argv
// or env: a prompt has no size limit there and never shows in `ps` or `docker inspect`).
// stdout: every message of `query({prompt, options: sdkOptions})` as one JSON line. Failures end
// with one `{"type":"error","message":...}` line and a non-zero exit:
//   1 query() failed   2 bad input   3 the Agent SDK is not installed or has no query()
//   130 / 143 aborted by SIGINT / SIGTERM (query() got an AbortController abort first)
// stderr: what the SDK reports through its `stderr` option.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const SDK = '@anthropic-ai/claude-agent-sdk';
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 };

function print(message) {
  return new Promise((resolve) => {
    if (process.stdout.write(JSON.stringify(message) + '\n')) resolve();
    else process.stdout.once('drain', resolve);
  });
}

let failed = false;
function fail(message, code) {
  if (failed) return;
  failed = true;
  process.stdout.write(JSON.stringify({ type: 'error', message: `sdk-runner: ${message}` }) + '\n', () =>
    process.exit(code),
  );
}

async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  let input;
  try {
    input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (e) {
    throw Object.assign(new Error(`stdin is not valid JSON: ${e.message}`), { exitCode: 2 });
  }
  const bad = (what) => Object.assign(new Error(`bad input: ${what}`), { exitCode: 2 });
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw bad('expected a JSON object {prompt, sdkOptions}');
  if (typeof input.prompt !== 'string') throw bad("field 'prompt' must be a string");
  const options = input.sdkOptions === undefined ? {} : input.sdkOptions;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw bad("field 'sdkOptions' must be an object");
  return { prompt: input.prompt, options };
}

// ESM ignores NODE_PATH, and a global install is outside every module's node_modules chain, so
// look in the usual global roots ourselves and resolve the package entry from its package.json.
function globalRoots() {
  const roots = (process.env.NODE_PATH || '').split(':').filter(Boolean);
  roots.push(join(dirname(dirname(process.execPath)), 'lib', 'node_modules'));
  roots.push('/usr/local/lib/node_modules', '/usr/lib/node_modules');
  return [...new Set(roots)];
}

function pickTarget(target) {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) {
    for (const t of target) {
      const found = pickTarget(t);
      if (found) return found;
    }
  } else if (target && typeof target === 'object') {
    // Node's own rule: the first listed condition that applies wins.
    for (const [condition, t] of Object.entries(target)) {
      if (condition === 'node' || condition === 'import' || condition === 'default') {
        const found = pickTarget(t);
        if (found) return found;
      }
    }
  }
  return null;
}

async function loadQuery() {
  const roots = globalRoots();
  for (const root of roots) {
    const dir = join(root, SDK);
    if (!existsSync(join(dir, 'package.json'))) continue;
    let pkg;
    try {
      pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    } catch (e) {
      throw Object.assign(new Error(`${dir}/package.json is unreadable: ${e.message}`), { exitCode: 3 });
    }
    let exp = pkg.exports;
    if (exp && typeof exp === 'object' && !Array.isArray(exp) && '.' in exp) exp = exp['.'];
    const entry = join(dir, pickTarget(exp) || pkg.main || 'index.js');
    let mod;
    try {
      mod = await import(pathToFileURL(entry).href);
    } catch (e) {
      throw Object.assign(new Error(`cannot load ${SDK} from ${entry}: ${e.message}`), { exitCode: 3 });
    }
    const query = typeof mod.query === 'function' ? mod.query : mod.default && mod.default.query;
    if (typeof query !== 'function') {
      throw Object.assign(new Error(`${SDK} at ${dir} has no query() function`), { exitCode: 3 });
    }
    return query;
  }
  throw Object.assign(
    new Error(`${SDK} is not installed in the image (looked in ${roots.join(', ')}); install it globally with npm install -g ${SDK}`),
    { exitCode: 3 },
  );
}

async function main() {
  const controller = new AbortController();
  let signalled = null;
  for (const sig of Object.keys(SIGNAL_EXIT)) {
    process.on(sig, () => {
      if (signalled) process.exit(SIGNAL_EXIT[sig]); // a second signal: stop waiting for the SDK
      signalled = sig;
      controller.abort();
      // An SDK that ignores its abort must not keep the job alive.
      setTimeout(() => fail(`query() did not end within 5 s of ${sig}`, SIGNAL_EXIT[sig]), 5000).unref();
    });
  }
  const { prompt, options } = await readInput();
  const query = await loadQuery();
  try {
    const messages = query({
      prompt,
      options: { ...options, abortController: controller, stderr: (data) => process.stderr.write(data) },
    });
    for await (const message of messages) {
      if (failed) return;
      await print(message);
    }
  } catch (e) {
    if (signalled) throw Object.assign(new Error(`aborted by ${signalled}`), { exitCode: SIGNAL_EXIT[signalled] });
    throw Object.assign(new Error(`query() failed: ${e && e.message ? e.message : String(e)}`), { exitCode: 1 });
  }
  if (signalled) throw Object.assign(new Error(`aborted by ${signalled}`), { exitCode: SIGNAL_EXIT[signalled] });
  process.stdout.write('', () => process.exit(0));
}

main().catch((e) => fail(e && e.message ? e.message : String(e), (e && e.exitCode) || 1));
