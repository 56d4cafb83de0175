'use strict';
// The streaming primitive from a Rust producer thread to JS, driven by the test producer
// (`_testStream`, exported by the binding for tests only): order, early stop, cancel reaching a
// blocked producer, errors with codes, panics contained, the event loop kept free, memory bounded.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { promisify } = require('node:util');
const { _testStream } = require('../binding.js');
const { messages } = require('../index.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1 << 20;

test('all lines arrive in order, parsed, and the stream then ends', async (t) => {
  const count = 200_000;
  const started = process.hrtime.bigint();
  let expected = 0;
  for await (const message of messages(_testStream(count, 200))) {
    assert.equal(message.i, expected);
    expected += 1;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  assert.equal(expected, count);
  t.diagnostic(`${count} lines of 200 B in ${seconds.toFixed(2)} s: ${Math.round(count / seconds)} lines/s parsed`);
});

test('raw next() batches: a fast consumer takes many lines per call, then null', async (t) => {
  const stream = _testStream(100_000, 100);
  let lines = 0;
  let calls = 0;
  const started = process.hrtime.bigint();
  for (let batch = await stream.next(); batch !== null; batch = await stream.next()) {
    calls += 1;
    lines += JSON.parse(batch).length;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  assert.equal(lines, 100_000);
  assert.ok(calls < lines / 4, `expected batching, got ${calls} next() calls for ${lines} lines`);
  assert.equal(await stream.next(), null, 'an ended stream keeps answering null');
  t.diagnostic(`${Math.round(lines / seconds)} lines/s unparsed, ${(lines / calls).toFixed(1)} lines per next()`);
});

test('a consumer that breaks early stops the producer before the loop is left', async () => {
  const count = 1_000_000;
  const stream = _testStream(count, 100);
  let seen = 0;
  for await (const message of messages(stream)) {
    seen += 1;
    if (message.i === 9) break;
  }
  const stats = stream.stats();
  assert.equal(seen, 10);
  assert.ok(stats.cancelled, 'break cancels the stream');
  assert.ok(stats.finished, 'return() waits until the producer has ended');
  assert.ok(stats.sent <= stats.delivered + 1024, `the producer ran ahead by ${stats.sent - stats.delivered} lines`);
  await sleep(50);
  assert.equal(stream.stats().sent, stats.sent, 'nothing is produced after the cancel');
});

test('cancel reaches a producer blocked outside send (its canceller runs)', async () => {
  const stream = _testStream(100, 50, { stallAfter: 5 });
  const seen = [];
  for await (const message of messages(stream)) {
    seen.push(message.i);
    if (seen.length === 5) break; // the producer is now blocked until its canceller runs
  }
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  assert.ok(stream.stats().finished);
});

test('an abort signal ends a stream whose next() is pending', async () => {
  const stream = _testStream(100, 50, { stallAfter: 3 });
  const controller = new AbortController();
  const seen = [];
  setTimeout(() => controller.abort(), 100);
  const started = Date.now();
  for await (const message of messages(stream, controller.signal)) seen.push(message.i);
  assert.deepEqual(seen, [0, 1, 2]);
  assert.ok(Date.now() - started < 2000);
  assert.ok(stream.stats().cancelled);
  await stream.cancel(); // settles at once: the producer has ended
  assert.ok(stream.stats().finished);
});

test('a producer error rejects after the lines before it, with its code', async () => {
  const seen = [];
  await assert.rejects(
    async () => {
      for await (const message of messages(_testStream(10, 50, { failAfter: 3 }))) seen.push(message.i);
    },
    (err) => {
      assert.ok(err instanceof Error);
      assert.equal(err.code, 'TEST_FAILURE');
      assert.equal(err.message, 'failed after 3 lines');
      return true;
    },
  );
  assert.deepEqual(seen, [0, 1, 2]);
});

test('a panicking producer becomes an INTERNAL error, and the process lives on', async () => {
  await assert.rejects(
    async () => {
      for await (const _ of messages(_testStream(10, 50, { panicAfter: 2 }))) {
        // consume
      }
    },
    { code: 'INTERNAL', message: 'internal error: the job thread panicked' },
  );
});

test('a second next() while one is pending is refused', async () => {
  const stream = _testStream(10, 50, { stallAfter: 0 });
  const pending = stream.next();
  assert.throws(() => stream.next(), /earlier next\(\) is still pending/);
  await stream.cancel();
  assert.equal(await pending, null, 'cancel settles the pending next() with null');
});

test('streams waiting for lines hold no libuv pool thread', { timeout: 10_000 }, async () => {
  // An AsyncTask blocking on a channel would hold a pool thread per waiting next(); with the
  // default four threads, eight waiting streams would stall pbkdf2 (a pool job) until cancelled.
  const streams = Array.from({ length: 8 }, () => _testStream(10, 50, { stallAfter: 0 }));
  const pending = streams.map((s) => s.next());
  const started = Date.now();
  await promisify(crypto.pbkdf2)('pw', 'salt', 1000, 32, 'sha256');
  assert.ok(Date.now() - started < 1000, `pbkdf2 took ${Date.now() - started} ms`);
  await Promise.all(streams.map((s) => s.cancel()));
  assert.deepEqual(await Promise.all(pending), streams.map(() => null));
});

test('a timer keeps firing on time while 100 MB stream through', async (t) => {
  const lags = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    lags.push(now - last - 10);
    last = now;
  }, 10);
  const started = performance.now();
  let bytes = 0;
  let n = 0;
  try {
    for await (const message of messages(_testStream(100_000, 1000))) {
      bytes += message.pad.length + 30;
      n += 1;
    }
  } finally {
    clearInterval(timer);
  }
  const seconds = (performance.now() - started) / 1000;
  assert.equal(n, 100_000);
  const maxLag = Math.max(...lags);
  t.diagnostic(`100 MB in ${seconds.toFixed(2)} s (${(bytes / MiB / seconds).toFixed(0)} MiB/s parsed); timer fired ${lags.length} times, max lag ${maxLag.toFixed(1)} ms`);
  // A blocked loop would fire the timer about once, late by the whole stream (over a second);
  // the bounds leave room for a machine whose other work takes the CPU now and then.
  assert.ok(lags.length >= Math.floor((seconds * 1000) / 10) / 3, `the timer fired only ${lags.length} times in ${seconds.toFixed(2)} s`);
  assert.ok(maxLag < 250, `max timer lag ${maxLag.toFixed(1)} ms`);
});

test('a stream that JS drops without cancelling is cancelled when it is collected', () => {
  // In a child with --expose-gc: a producer blocked (as in a socket read) until its canceller
  // runs; the stream is dropped after one batch and collected; the producer's thread must end.
  const script = `
    const fs = require('node:fs');
    const { _testStream } = require(${JSON.stringify(require.resolve('../binding.js'))});
    const producers = () => fs.readdirSync('/proc/self/task').filter((t) => {
      try { return fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').startsWith('herdctl-test'); } catch { return false; }
    }).length;
    (async () => {
      let stream = _testStream(10, 100, { stallAfter: 1 });
      await stream.next();
      const before = producers();
      stream = null;
      for (let i = 0; i < 50 && producers() > 0; i++) {
        global.gc();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      console.log(JSON.stringify({ before, after: producers() }));
    })();
  `;
  const { execFileSync } = require('node:child_process');
  const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 20_000 }));
  assert.deepEqual(out, { before: 1, after: 0 });
});
