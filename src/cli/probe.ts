// `labctl probe`: measure a real NAT (from wherever labctl runs) against an RFC 5780 STUN
// server and turn it into a lab; `labctl stun-server`: labctl's RFC 5780 server on any host
// with two addresses, for probing from the field. Exit codes: 0 ok, 1 something could not
// be measured (or the server could not run), 2 bad input.
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { action, example, printJson, requireRoot } from './common.js';
import { UsageError } from '../util/errors.js';

interface ProbeCliOptions {
  server?: string;
  altServer?: string;
  namespace?: string;
  port?: string;
  runs?: string;
  lifetime?: boolean;
  lifetimeMax?: string;
  json?: boolean;
  labOut?: string;
}

interface StunServerCliOptions {
  address?: string;
  altAddress?: string;
  port?: string;
  altPort?: string;
  json?: boolean;
}

function intOption(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${name} wants a whole number from ${min} to ${max} (got "${v}")`);
  return n;
}

/** The `stun-server` command (also used by the unit test that checks systemd/labctl-stun-server.service's ExecStart= against it). */
export function registerStunServerCommand(program: Command): Command {
  return example(
    program
      .command('stun-server')
      .description(
        "run labctl's RFC 5389/5780 STUN server on two addresses of this host (e.g. a cloud VM), in the foreground until Ctrl-C or SIGTERM, for `labctl probe --server` from anywhere",
      )
      .option('--address <addr>', 'the first address (A1) to listen on: an address of this host')
      .option('--alt-address <addr>', 'the second address (A2): another address of this host, of the same family')
      .option('--port <port>', 'the first port (P1)', '3478')
      .option('--alt-port <port>', 'the second port (P2; default: the port next to P1)')
      .option('--json', 'print JSON lines: {"event":"ready",...} once listening, {"event":"stopped",...} at the end')
      .addHelpText(
        'after',
        '\nNo root is needed for ports from 1024 up. systemd/labctl-stun-server.service runs it as a hardened unit (see the comments in it).\n' +
          'On a cloud VM, give the private addresses; clients then name the public second address with `labctl probe --alt-server`.',
      )
      .action(action(stunServerCommand)),
    'labctl stun-server --address 192.0.2.10 --alt-address 192.0.2.11',
    'labctl stun-server --address 192.0.2.10 --alt-address 192.0.2.11 --port 3478 --alt-port 3479 --json',
  );
}

export function registerProbeCommands(program: Command): void {
  example(
    program
      .command('probe')
      .description(
        'classify the NAT (or chain of NATs) between here and an RFC 5780 STUN server: mapping, filtering, hairpinning, port allocation, pooling, and with --lifetime how long idle mappings live; prints the nat: block that behaves the same, and --lab-out writes a lab with it',
      )
      .option('--server <host[:port]>', 'the RFC 5780 STUN server: labctl stun-server, coturn turnserver, stuntman (port 3478 unless given)')
      .option('--alt-server <host[:port]>', "the server's second address (default: what it says in OTHER-ADDRESS; give it where that is a private address)")
      .option('--namespace <ns>', 'run the probes in this network namespace (root), not in the current one (no root needed)')
      .option('--port <port>', 'one inside port for every test (a NAT that sends every flow from one outside port needs it)')
      .option('--runs <n>', 'repetitions of each test', '3')
      .option('--lifetime', 'also measure how long idle UDP mappings live, and the keepalive that keeps them (takes minutes)')
      .option('--lifetime-max <seconds>', 'with --lifetime: stop looking at this idle time (default: 45 s unreplied, 180 s stream)')
      .option('--json', 'print one JSON document')
      .option('--lab-out <file>', 'write a whole lab to FILE: the measured NAT as a site, a node behind it, a server on the internet')
      .action(action(probeCommand)),
    'labctl probe --server stun.example.net',
    'labctl probe --server 192.0.2.10 --lab-out my-carrier.yaml && sudo labctl net up my-carrier.yaml',
    'sudo labctl probe --namespace ns-c1 --server 203.0.113.1 --port 12345 --json',
  );
  registerStunServerCommand(program);
}

async function probeCommand(opts: ProbeCliOptions): Promise<number> {
  if (!opts.server) throw new UsageError('--server HOST[:PORT] is needed: the RFC 5780 STUN server to probe against (labctl stun-server runs one)');
  const runs = intOption('--runs', opts.runs, 1, 10)!;
  const port = intOption('--port', opts.port, 1, 65535);
  const lifetimeMax = intOption('--lifetime-max', opts.lifetimeMax, 2, 3600);
  if (lifetimeMax !== undefined && !opts.lifetime) throw new UsageError('--lifetime-max goes with --lifetime');
  const { parseEndpointSpec, runProbe } = await import('../probe/run.js');
  // Bad input is reported before anything runs (and before root is asked for).
  parseEndpointSpec('--server', opts.server);
  if (opts.altServer !== undefined) parseEndpointSpec('--alt-server', opts.altServer);
  if (opts.namespace) requireRoot('probe --namespace', 'it runs the probes inside another network namespace');
  const report = await runProbe({
    server: opts.server,
    ...(opts.altServer !== undefined ? { altServer: opts.altServer } : {}),
    ...(opts.namespace ? { namespace: opts.namespace } : {}),
    ...(port !== undefined ? { localPort: port } : {}),
    repetitions: runs,
    ...(opts.lifetime ? { lifetime: true } : {}),
    ...(lifetimeMax !== undefined ? { lifetimeMax } : {}),
  });
  const { formatProbe, labYaml, natBlockYaml } = await import('../probe/report.js');
  let written: string | undefined;
  if (opts.labOut) {
    if (report.nat) {
      const { parseLab } = await import('../lab/resolve.js');
      const text = labYaml(report, opts.labOut);
      // What is written must be a lab labctl takes as it is.
      parseLab(text, opts.labOut);
      writeFileSync(opts.labOut, text);
      written = opts.labOut;
    }
  }
  if (opts.json) printJson({ ...report, ...(report.nat ? { natYaml: natBlockYaml(report.nat) } : {}), ...(written ? { labOut: written } : {}) });
  else {
    process.stdout.write(formatProbe(report));
    if (written) process.stdout.write(`wrote the lab to ${written}: sudo labctl net up ${written} (or up), then sudo labctl check ${written}\n`);
  }
  if (opts.labOut && !written) process.stderr.write(`labctl probe: no lab written to ${opts.labOut}: mapping or filtering could not be measured\n`);
  if (report.unmeasured.length) process.stderr.write(`labctl probe: could not measure ${report.unmeasured.join('; ')}\n`);
  return report.unmeasured.length || (opts.labOut && !written) ? 1 : 0;
}

async function stunServerCommand(opts: StunServerCliOptions): Promise<number> {
  const { listeningLine, parseServePlan, serveForeground } = await import('../stun/serve.js');
  const plan = parseServePlan(opts);
  const requests = await serveForeground(plan, () => {
    if (opts.json) process.stdout.write(`${JSON.stringify({ event: 'ready', server: { addresses: plan.addresses, ports: plan.ports } })}\n`);
    else {
      process.stdout.write(`${listeningLine(plan.addresses, plan.ports)}\n`);
      process.stdout.write(`  probe a NAT from behind it: labctl probe --server ${plan.addresses[0]}:${plan.ports[0]}\n`);
      process.stdout.write('Ctrl-C (or SIGTERM) stops it\n');
    }
  });
  if (opts.json) process.stdout.write(`${JSON.stringify({ event: 'stopped', requests })}\n`);
  else process.stdout.write(`stopped after ${requests} request(s)\n`);
  return 0;
}
