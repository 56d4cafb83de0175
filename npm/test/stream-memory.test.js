'use strict';
// Memory stays bounded when the consumer is slow. In its own file, so that it runs in a fresh
// process whose RSS no earlier test has grown.
const test = require('node:test');
const assert = require('node:assert/strict');
const { _testStream } = require('../binding.js');
const { messages } = require('../index.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1 << 20;

test('a slow consumer bounds memory: the producer waits at the capacity', async (t) => {
  const before = process.memoryUsage().rss;
  const stream = _testStream(100_000, 1000); // 100 MB if nothing held the producer back
  const iterator = messages(stream);
  let peak = before;
  let taken = 0;
  const until = Date.now() + 1500;
  while (Date.now() < until) {
    const { value } = await iterator.next();
    assert.equal(value.i, taken);
    taken += 1;
    peak = Math.max(peak, process.memoryUsage().rss);
    await sleep(5);
  }
  const stats = stream.stats();
  await iterator.return();
  const grew = (peak - before) / MiB;
  t.diagnostic(`slow consumer took ${taken} lines in 1.5 s; producer sent ${stats.sent}; max buffered ${(stats.maxQueuedBytes / 1024).toFixed(0)} KiB; RSS grew ${grew.toFixed(1)} MiB`);
  assert.ok(stats.maxQueuedBytes <= MiB, `buffered up to ${stats.maxQueuedBytes} bytes`);
  assert.ok(stats.sent <= taken + 1024 + 1024, `the producer ran ${stats.sent - taken} lines ahead`);
  assert.ok(grew < 40, `RSS grew ${grew.toFixed(1)} MiB`);
  assert.ok(stream.stats().finished);
});
