'use strict';
// A proxy on a unix socket in front of the real engine that answers exec create with a 500
// quoting the request body (env and all), as some engines and proxies do. A real engine cannot be
// made to do that on demand; every other request goes to the real engine unchanged.
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

function engineSocket() {
  const host = process.env.DOCKER_HOST || '';
  return host.startsWith('unix://') ? host.slice('unix://'.length) : '/var/run/docker.sock';
}

/**
 * Starts the proxy. `echoed` counts the exec-create bodies it quoted that held `needle` (proof
 * that the fault happened); `close()` stops it.
 */
async function startEchoProxy(needle) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdctl-echo-proxy-'));
  const socketPath = path.join(dir, 'proxy.sock');
  const state = { echoed: 0 };
  const server = net.createServer((client) => {
    const engine = net.connect(engineSocket());
    engine.pipe(client);
    engine.on('error', () => client.destroy());
    client.on('error', () => engine.destroy());
    let pending = Buffer.alloc(0);
    let raw = false;
    client.on('data', (chunk) => {
      if (raw) return void engine.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const headEnd = pending.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = pending.subarray(0, headEnd + 4).toString('latin1');
        const lower = head.toLowerCase();
        const length = /\r\ncontent-length:\s*(\d+)/.exec(lower);
        if (lower.includes('\r\nupgrade:') || lower.includes('\r\ntransfer-encoding:')) {
          // Not framed by Content-Length (an exec's hijacked stream, a chunked upload): copy.
          raw = true;
          engine.write(pending);
          return;
        }
        const end = headEnd + 4 + (length ? Number(length[1]) : 0);
        if (pending.length < end) return;
        const [method, target] = head.split(' ');
        const body = pending.subarray(headEnd + 4, end).toString('utf8');
        // Only the job's exec carries the needle; the runner's own check of a fresh container
        // (no env) is forwarded.
        if (method === 'POST' && target.endsWith('/exec') && body.includes(needle)) {
          state.echoed += 1;
          const json = JSON.stringify({ message: `invalid request body: ${body}` });
          client.end(`HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`);
          engine.destroy();
          return;
        }
        engine.write(pending.subarray(0, end));
        pending = pending.subarray(end);
      }
    });
    client.on('end', () => engine.end());
  });
  await new Promise((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    get echoed() {
      return state.echoed;
    },
    close() {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startEchoProxy };
