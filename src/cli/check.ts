// `labctl check`: classify the lab's NAT routers from inside the lab with labctl's own STUN
// server and client (RFC 5389/5780), measure mapping lifetimes, and try UDP hole punching
// between every pair of nodes. Exit codes: 0 everything as declared, 1 something differs,
// 2 an error (bad input, lab not up, a probe that could not run, a NAT that answered no probe,
// a lifetime no probe could check, a node that learned no endpoint for --pairs).
import type { Command } from 'commander';
import { action, example, printJson, requireRoot } from './common.js';
import { EXIT_BAD_INPUT, UsageError } from '../util/errors.js';
import type { CheckOutcome } from '../check/report.js';

interface CheckCliOptions {
  nat?: string;
  json?: boolean;
  lifetime?: boolean;
  pairs?: boolean;
  namespace?: string[];
  serverNamespace?: string;
  port?: string;
  expect?: string;
  runs?: string;
  serverAddress?: string;
  server?: string;
  lifetimeMax?: string;
  serve?: boolean;
  serveSeconds?: string;
  quota?: boolean | string;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',').filter(Boolean)];
}

function intOption(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} wants a whole number from ${min} to ${max} (got "${v}")`);
  return n;
}

export function registerCheckCommands(program: Command): void {
  example(
    program
      .command('check')
      .description(
        "classify every NAT router from inside the lab (RFC 5780 tests with labctl's own STUN server and client) and compare with the lab file; exit 0 as declared, 1 differs, 2 an error (also anything no probe could measure)",
      )
      .argument('[file]', 'lab file, or the name of a built-in lab (its network must be up)')
      .option('--nat <name>', 'only this NAT router (of a lab file)')
      .option('--json', 'print one JSON document')
      .option('--lifetime', 'measure how long idle UDP mappings live (to about 1 s) and the keepalive that keeps them, instead of the behaviour tests')
      .option(
        '--pairs',
        'also try UDP hole punching between every pair of nodes (all of them, whatever --nat says: the punches run at once) and explain who can talk directly',
      )
      .option('--namespace <ns>', 'probe from this inside namespace of a lab labctl did not build (repeatable)', collect)
      .option('--server-namespace <ns>', 'with --namespace: the internet namespace for the STUN server (default: where default routes end)')
      .option('--port <port>', 'inside port for the filtering and hairpinning probes (e.g. the port a fixed-port NAT forwards to)')
      .option(
        '--expect <type>',
        'with --namespace: the behaviour the NAT should have (full-cone, restricted-cone, port-restricted-cone, symmetric, or MAPPING+FILTERING such as EIM+ADF)',
      )
      .option('--runs <n>', 'repetitions of each test', '3')
      .option(
        '--quota [max-flows]',
        "also open new flows from each node until the NAT refuses one (RFC 6888's per-subscriber limit, or a full port block), and compare with the lab file; at most max-flows (default: the declared limit + 16, or 2048)",
      )
      .option('--server-address <a1,a2>', 'the two addresses the STUN server gets in the internet namespace (default: a free documentation range)')
      .option('--server <addr[:port]>', "use this RFC 5780 STUN server (e.g. coturn's turnserver) instead of starting labctl's")
      .option(
        '--lifetime-max <seconds>',
        'with --lifetime: give up on a mapping that lives longer than this (default: the larger of 1.5 times the expected lifetime and it + 5 s); a declared lifetime beyond it is reported unconfirmed, exit 2',
      )
      .option('--serve', "only run labctl's STUN server on its two addresses in the internet namespace, for third-party clients, until Ctrl-C")
      .option('--serve-seconds <seconds>', 'with --serve: stop after this long')
      // Flushing is how probes start from a clean NAT; on someone else's NAT it is not harmless.
      .addHelpText(
        'after',
        '\nCheck flushes conntrack (conntrack -F) in every NAT namespace on the probed paths before, during and after its probes,\n' +
          'NATs labctl did not build (--namespace) included: flows through them lose their NAT state (a running VPN tunnel may have to reconnect).',
      )
      // Exit 1 means "a NAT differs", so any error, expected or not, exits 2.
      .action(action(checkCommand, EXIT_BAD_INPUT)),
    'sudo labctl check',
    'sudo labctl check my-lab.yaml --nat home-nat --json',
    'sudo labctl check my-lab.yaml --lifetime',
    'sudo labctl check my-lab.yaml --nat cgn-nat --quota',
    'sudo labctl check my-lab.yaml --pairs',
    'sudo labctl check --namespace ns-c1 --server-namespace ns-inet --expect restricted-cone',
  );
}

async function checkCommand(file: string | undefined, opts: CheckCliOptions): Promise<number> {
  const { loadLab } = await import('../lab/load.js');
  const { parseExpect, parseServer } = await import('../check/options.js');
  const { validAddressPair } = await import('../check/stun-site.js');
  const { checkExitCode, formatCheck } = await import('../check/report.js');
  if (file && opts.namespace?.length) throw new UsageError('give a lab file or --namespace, not both');
  if (!opts.namespace?.length && (opts.serverNamespace || opts.expect)) throw new UsageError('--server-namespace and --expect go with --namespace');
  const lab = opts.namespace?.length ? undefined : loadLab(file);
  requireRoot('check', "it runs its probes inside the lab's network namespaces");
  const runs = intOption('--runs', opts.runs, 1, 10)!;
  const port = intOption('--port', opts.port, 1, 65535);
  const lifetimeMax = intOption('--lifetime-max', opts.lifetimeMax, 2, 3600);
  const quota = typeof opts.quota === 'string' ? intOption('--quota', opts.quota, 1, 60000) : opts.quota;
  if (quota && opts.lifetime && !opts.pairs) throw new UsageError('--quota goes with the behaviour tests; --lifetime alone runs none (leave one of them out)');
  const common = {
    ...(lab ? { lab } : { namespaces: opts.namespace! }),
    ...(opts.nat ? { nat: opts.nat } : {}),
    ...(opts.serverNamespace ? { serverNamespace: opts.serverNamespace } : {}),
    ...(port !== undefined ? { localPort: port } : {}),
    ...(opts.expect ? { expect: parseExpect(opts.expect) } : {}),
    ...(opts.serverAddress ? { serverAddresses: validAddressPair(opts.serverAddress) } : {}),
    ...(opts.server ? { externalServer: parseServer(opts.server) } : {}),
    repetitions: runs,
    ...(quota ? { quota } : {}),
  };
  if (opts.serve) {
    const { runServe } = await import('../check/run.js');
    const { listeningLine } = await import('../stun/serve.js');
    const seconds = intOption('--serve-seconds', opts.serveSeconds, 1, 86400);
    await runServe({ ...common, ...(seconds !== undefined ? { seconds } : {}) }, (server) => {
      if (opts.json) process.stdout.write(`${JSON.stringify({ event: 'ready', server })}\n`);
      else {
        process.stdout.write(`${listeningLine(server.addresses, server.ports, server.netns)}\n`);
        process.stdout.write(`  e.g. ip netns exec NODE-NS turnutils_natdiscovery -m -f -L NODE-ADDRESS ${server.addresses[0]}\n`);
        process.stdout.write(`  or   sudo labctl probe --namespace NODE-NS --server ${server.addresses[0]}:${server.ports[0]}\n`);
        process.stdout.write(seconds ? `stopping in ${seconds} s\n` : 'Ctrl-C stops it and removes its addresses\n');
      }
    });
    if (opts.json) process.stdout.write(`${JSON.stringify({ event: 'stopped' })}\n`);
    return 0;
  }
  const doc: Record<string, unknown> = {};
  const text: string[] = [];
  const parts: CheckOutcome[] = [];
  // For stderr: what could not be measured at all, and why.
  const problems: string[] = [];
  if (!opts.lifetime || opts.pairs) {
    const { runCheck } = await import('../check/run.js');
    const report = await runCheck(common);
    Object.assign(doc, report);
    text.push(formatCheck(report));
    parts.push(report);
    if (report.unmeasured.length)
      problems.push(
        `could not measure ${report.unmeasured.join(', ')}: no answers to the probes (see the evidence above); is the path to the internet namespace working?`,
      );
    if (opts.pairs) {
      const { runPairs, formatPairs } = await import('../check/pairs.js');
      const pairs = await runPairs(common, report);
      doc.pairs = pairs;
      text.push(formatPairs(pairs));
      parts.push(pairs);
      if (pairs.unmeasured.length) problems.push(`could not try hole punching with ${pairs.unmeasured.join(', ')}: no endpoint learned from the STUN server`);
    }
  }
  if (opts.lifetime) {
    const { runLifetime, formatLifetime } = await import('../check/lifetime.js');
    const lifetime = await runLifetime({ ...common, ...(lifetimeMax !== undefined ? { maxSeconds: lifetimeMax } : {}) });
    doc.lifetime = lifetime;
    text.push(formatLifetime(lifetime));
    parts.push({ ...lifetime, unmeasured: [...lifetime.unmeasured, ...lifetime.unconfirmed] });
    if (lifetime.unmeasured.length)
      problems.push(
        `could not measure ${lifetime.unmeasured.join(', ')}: no probe could make a check (see the evidence above); is the path to the internet namespace working?`,
      );
    if (lifetime.unconfirmed.length)
      problems.push(
        lifetimeMax !== undefined
          ? `could not confirm ${lifetime.unconfirmed.join(', ')}: the checks stopped first (--lifetime-max ${lifetimeMax} s); raise --lifetime-max, or leave it out`
          : `could not confirm ${lifetime.unconfirmed.join(', ')}: the mapping was still there when the checks stopped (at the larger of 1.5 times the declared lifetime and it + 5 s), or the last checks failed (see the evidence above)`,
      );
  }
  const match = parts.every((p) => p.match !== false);
  // No answer at all is not a behaviour: the verdict for that NAT is missing, an error.
  const code = checkExitCode(parts);
  if (opts.json) printJson({ ...doc, match, exitCode: code });
  else process.stdout.write(text.join('\n'));
  for (const p of problems) process.stderr.write(`labctl check: ${p}\n`);
  return code;
}
