#!/usr/bin/env node
// labctl's probe agent, run by the host inside a namespace:
//   ip netns exec NS node dist/stun/agent.js server '{"addresses":["A1","A2"],"portPairs":[[3478,3479]]}'
//   ip netns exec NS node dist/stun/agent.js client
// It prints JSON lines on stdout. The server prints {"event":"ready",...} once every socket
// is bound, serves until its standard input closes (or SIGTERM), then prints
// {"event":"stopped","requests":N}. The client prints {"event":"ready"}, then reads one
// request per line, {"id":1,"op":"mapping","args":{...}}, runs them concurrently and
// answers each with {"id":1,"result":...} or {"id":1,"error":"..."}; it exits when its
// standard input closes. Besides the probes of src/stun/probes.ts, the client answers
// {"op":"serve","args":{"addresses":[...],"portPairs":[[...]]}} by starting the server in
// its own process (so the host can start the process while it adds the server's addresses,
// and only then ask it to bind them). Nothing needs to be installed in the namespace's machine: the
// host's node runs it with the namespace's network.
import { createInterface } from 'node:readline';
import { StunServer, type StunServerOptions } from './server.js';
import { PROBES, type ProbeName } from './probes.js';

function out(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function server(argsJson: string | undefined): Promise<void> {
  const options = JSON.parse(argsJson ?? '{}') as StunServerOptions;
  let srv: StunServer;
  try {
    srv = await StunServer.start(options);
  } catch (e) {
    out({ event: 'error', message: String((e as Error).message ?? e) });
    process.exitCode = 1;
    return;
  }
  out({ event: 'ready', endpoints: srv.endpoints });
  const stop = () => {
    srv.close();
    out({ event: 'stopped', requests: srv.requests });
    process.exit(0);
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

let served: StunServer | undefined;

async function serve(options: StunServerOptions): Promise<{ endpoints: unknown }> {
  if (served) throw new Error('already serving');
  served = await StunServer.start(options);
  return { endpoints: served.endpoints };
}

async function client(): Promise<void> {
  const ops = { ...PROBES, serve: (a: StunServerOptions) => serve(a) } as unknown as Record<string, (a: unknown) => unknown>;
  const rl = createInterface({ input: process.stdin });
  const running = new Set<Promise<void>>();
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let req: { id: number; op: ProbeName | 'serve'; args: unknown };
    try {
      req = JSON.parse(line) as typeof req;
    } catch {
      out({ id: null, error: `not JSON: ${line.slice(0, 80)}` });
      return;
    }
    const fn = ops[req.op];
    if (!fn) {
      out({ id: req.id, error: `unknown op "${req.op}" (known: ${Object.keys(ops).join(', ')})` });
      return;
    }
    const p = (async () => {
      try {
        out({ id: req.id, result: await fn(req.args ?? {}) });
      } catch (e) {
        out({ id: req.id, error: String((e as Error).message ?? e) });
      }
    })();
    running.add(p);
    void p.finally(() => running.delete(p));
  });
  rl.on('close', () => {
    served?.close();
    void Promise.allSettled([...running]).then(() => process.exit(0));
  });
  out({ event: 'ready', pid: process.pid });
}

// No top-level await: the agent is also bundled as CommonJS (scripts/bundle.mjs).
const [mode, arg] = process.argv.slice(2);
if (mode === 'server') void server(arg);
else if (mode === 'client') void client();
else {
  process.stderr.write('usage: agent.js server JSON | client\n');
  process.exitCode = 2;
}
