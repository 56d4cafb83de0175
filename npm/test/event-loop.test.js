'use strict';
// The event loop stays free while a job streams 100 MB of messages: a 10 ms timer keeps firing
// on time, and the throughput is reported (messages/s, MB/s, timer lag).
const test = require('node:test');
const assert = require('node:assert/strict');

const { Fleet } = require('./helpers/fleet.js');

const fleet = new Fleet('loop');
test.after(() => fleet.cleanup());

test('a 10 ms timer keeps firing on time while 100 MB of output streams', { timeout: 120_000 }, async (t) => {
  const count = 10_000;
  const size = 10_400; // the stand-in puts size - 400 bytes of text in each message: 100 MB in all
  const ticks = [];
  let last = process.hrtime.bigint();
  const timer = setInterval(() => {
    const now = process.hrtime.bigint();
    ticks.push(Number(now - last) / 1e6);
    last = now;
  }, 10);
  const started = process.hrtime.bigint();
  let messages = 0;
  let bytes = 0;
  let result;
  try {
    for await (const m of fleet.runner().execute({ prompt: `#lines ${count} ${size}`, agent: fleet.agent('flood') })) {
      messages += 1;
      if (m.standin_line !== undefined) bytes += m.message.content[0].text.length;
      if (m.type === 'result' || m.type === 'error') result = m;
    }
  } finally {
    clearInterval(timer);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  assert.equal(result && result.type, 'result', JSON.stringify(result));
  assert.ok(bytes >= 100e6, `streamed ${bytes} bytes of text`);
  const lag = ticks.map((ms) => ms - 10).sort((a, b) => a - b);
  const p99 = lag[Math.floor(lag.length * 0.99)];
  const max = lag.at(-1);
  t.diagnostic(`${messages} messages, ${(bytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(2)} s: ${Math.round(messages / seconds)} messages/s, ${(bytes / 1e6 / seconds).toFixed(0)} MB/s`);
  t.diagnostic(`10 ms timer: ${ticks.length} ticks, lag p50 ${lag[Math.floor(lag.length / 2)].toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
  // The timer must keep firing through the whole stream (a blocked loop would starve it), and no
  // single delay may be long: each batch the loop handles is at most 1 MiB of JSON to parse.
  assert.ok(ticks.length >= (seconds * 1000) / 10 / 3, `only ${ticks.length} ticks in ${seconds.toFixed(2)} s`);
  assert.ok(p99 < 50, `p99 timer lag ${p99.toFixed(1)} ms`);
  assert.ok(max < 250, `max timer lag ${max.toFixed(1)} ms`);
});
