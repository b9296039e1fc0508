#!/usr/bin/env node
// A UDP endpoint for tests, run inside a lab namespace with `ip netns exec NS node udp-agent.mjs PORT...`.
// It binds every PORT given, prints one JSON line per datagram received
//   {"event":"recv","port":5000,"from":"100.64.9.100","fromPort":7000,"msg":"m1"}
// and reads commands from stdin, one per line:
//   send LOCALPORT HOST PORT MSG
// It prints {"event":"ready"} once every port is bound and exits when stdin closes.
import dgram from 'node:dgram';
import readline from 'node:readline';

const ports = process.argv.slice(2).map(Number);
const sockets = new Map();
let bound = 0;
for (const port of ports) {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, rinfo) => {
    process.stdout.write(`${JSON.stringify({ event: 'recv', port, from: rinfo.address, fromPort: rinfo.port, msg: msg.toString() })}\n`);
  });
  s.on('error', (e) => {
    process.stdout.write(`${JSON.stringify({ event: 'error', port, message: String(e) })}\n`);
  });
  s.bind(port, () => {
    if (++bound === ports.length) process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  });
  sockets.set(port, s);
}
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, local, host, port, ...rest] = line.trim().split(/\s+/);
  if (cmd !== 'send') return;
  const s = sockets.get(Number(local));
  s?.send(rest.join(' '), Number(port), host, (err) => {
    process.stdout.write(
      `${JSON.stringify({ event: err ? 'error' : 'sent', port: Number(local), to: host, toPort: Number(port), message: err ? String(err) : undefined })}\n`,
    );
  });
});
rl.on('close', () => {
  for (const s of sockets.values()) s.close();
});
