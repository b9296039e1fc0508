// bench/check: how long `labctl check` takes on the default lab and on a lab of 16 sites,
// how long `labctl check --lifetime` takes against the longest lifetime it measures, how
// long `labctl check` takes on a lab with one NAT of each profile (with and without
// --quota), and how long `labctl probe` (without --lifetime) takes to classify a lab NAT
// against `labctl stun-server` (their own sections of BENCHMARKS.md).
// It uses the default lab's names, so run it under the lock everyone uses:
//   sudo flock /tmp/labctl-article-names.lock node --import tsx bench/check.ts [--runs N] [--no-write] [--only check|profiles|probe]
// Wall times of whole commands, as a user sees them (process start included).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { NAT_PROFILES } from '../src/lab/nat-profiles.js';
import { machineLine, ms, netnsNames, requireRoot, stats, writeSection } from './report.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'labctl.js');
const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 7;
const lifetimeRuns = Math.max(1, Math.min(3, runs));
const write = !args.includes('--no-write');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
if (only !== undefined && !['check', 'profiles', 'probe'].includes(only)) {
  console.error('bench/check: --only takes check, profiles or probe');
  process.exit(2);
}
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];

requireRoot('bench/check');
if ((only === undefined || only === 'check') && netnsNames().some((n) => ARTICLE_NS.includes(n))) {
  console.error("bench/check: the article lab's namespaces exist; bring it down first (and run this under flock /tmp/labctl-article-names.lock)");
  process.exit(1);
}
execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });

const CHECK = [process.execPath, BIN, 'check'];

function run(argv: string[], env: NodeJS.ProcessEnv = process.env): { ms: number; stdout: string; stderr: string; status: number | null } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env, maxBuffer: 64 << 20 });
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, stdout: r.stdout, stderr: r.stderr, status: r.status };
}

function labctl(...a: string[]): void {
  const r = run([process.execPath, BIN, ...a]);
  if (r.status !== 0) throw new Error(`labctl ${a.join(' ')} exited ${r.status}: ${r.stderr}`);
}

function check(...a: string[]): { ms: number; stdout: string; stderr: string } {
  const r = run([...CHECK, ...a]);
  if (r.status !== 0) throw new Error(`labctl check ${a.join(' ')} exited ${r.status}:\n${r.stdout.slice(-3000)}\n${r.stderr}`);
  return r;
}

const dir = mkdtempSync(join(tmpdir(), 'labctl-bench-check-'));
const TYPES = ['full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'];
const sixteen = join(dir, 'sixteen.yaml');
writeFileSync(
  sixteen,
  stringify({
    name: 'bench-check16',
    prefix: 'bc16-',
    sites: Array.from({ length: 16 }, (_, i) => ({ name: `s${i}`, nat: { type: TYPES[i % 4] }, nodes: [{ name: `s${i}n` }] })),
  }),
);
const life = join(dir, 'lifetime.yaml');
writeFileSync(
  life,
  stringify({
    name: 'bench-lifetime',
    prefix: 'bcl-',
    sites: [
      { name: 'a', nat: { type: 'full-cone', 'udp-timeouts': { unreplied: 3, stream: 6 } }, nodes: [{ name: 'an' }] },
      { name: 'b', nat: { type: 'symmetric', 'udp-timeouts': { unreplied: 5, stream: 10 } }, nodes: [{ name: 'bn' }] },
    ],
  }),
);

function benchCheck(): void {
  const loadStart = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const samples: Record<string, number[]> = { article: [], sixteen: [], lifetime: [] };
  const lifetimeOver: number[] = [];
  let longest = 0;
  let trace = '';
  try {
    labctl('net', 'up');
    try {
      for (let i = 0; i < runs; i++) samples.article!.push(check().ms);
      // Where the time goes, once (server, agents, the two phases, clean-up).
      const t = run([...CHECK], { ...process.env, LABCTL_CHECK_TRACE: '1' });
      trace = t.stderr
        .split('\n')
        .filter((l) => l.startsWith('[check'))
        .join('\n');
    } finally {
      labctl('net', 'down');
    }
    labctl('net', 'up', sixteen);
    try {
      for (let i = 0; i < runs; i++) samples.sixteen!.push(check(sixteen).ms);
    } finally {
      labctl('net', 'down', sixteen);
    }
    labctl('net', 'up', life);
    try {
      for (let i = 0; i < lifetimeRuns; i++) {
        const r = check(life, '--lifetime', '--json');
        const doc = JSON.parse(r.stdout) as { lifetime: { targets: { kinds: { estimate: { seconds?: number } }[] }[] } };
        const measured = doc.lifetime.targets.flatMap((t) => t.kinds.map((k) => k.estimate.seconds ?? 0));
        longest = Math.max(...measured);
        samples.lifetime!.push(r.ms);
        lifetimeOver.push(r.ms - longest * 1000);
      }
    } finally {
      labctl('net', 'down', life);
    }
  } finally {
    const left = netnsNames().filter((n) => ARTICLE_NS.includes(n) || n.startsWith('ns-bc16-') || n.startsWith('ns-bcl-'));
    if (left.length) console.error(`bench/check: left behind: ${left.join(' ')}`);
  }
  const loadEnd = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

  const s = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v)]));
  const over = stats(lifetimeOver);
  const row = (what: string, k: string) => `| ${what} | ${ms(s[k]!.median)} | ${ms(s[k]!.min)} | ${ms(s[k]!.max)} |`;
  const body = `
Measured ${new Date().toISOString().slice(0, 10)} on ${machineLine()}, by \`bench/check.ts\` (${runs} runs each, ${lifetimeRuns} for --lifetime; \`labctl check\`; wall time of whole commands, process start included). Load average at the start ${loadStart}, at the end ${loadEnd} (a shared machine: other work ran meanwhile).

Each check runs every RFC 5780 test 3 times per NAT (mapping over the 2 x 2 server matrix, filtering, hairpinning), all NATs at once, with NAT state flushed before and after, and between the two phases on paths through a fixed-port NAT (both of the default lab's NATs, none of the 16 sites'); the STUN server's addresses are added in the internet namespace and removed again by each run.

| command | median | min | max |
| --- | --- | --- | --- |
${row('`labctl check` of the default lab (2 NATs)', 'article')}
${row('`labctl check` of 16 sites (4 of each classic type)', 'sixteen')}
${row(`\`labctl check --lifetime\` (2 NATs, lifetimes 3/6 s and 5/10 s; longest measured ${longest} s)`, 'lifetime')}

- Default lab: **${(s.article!.median / 1000).toFixed(2)} s** median (target: under 3 s).
- \`--lifetime\`: the longest lifetime + **${(over.median / 1000).toFixed(2)} s** median (min ${(over.min / 1000).toFixed(2)} s; target: under + 3 s). Of that, 2.03 s is the warm-up a stream flow needs: the kernel gives a UDP flow the stream timeout only once it has seen a reply and traffic more than 2 s after its first packet, so its idle time cannot start earlier.

Where the time of one default-lab check goes (\`LABCTL_CHECK_TRACE=1\`, milliseconds since the labctl process started):

\`\`\`
${trace}
\`\`\`
`;
  process.stdout.write(body);
  if (write) writeSection('Check (`bench/check.ts`)', body);
}

// ------------------------------------------------------------------ one NAT of each profile

/** `labctl check` of a lab with one site per NAT profile: every row (allocation, pooling, blocks...), then with --quota. */
function benchProfiles(): void {
  const loadStart = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const profiles = Object.values(NAT_PROFILES);
  const lab = join(dir, 'profiles.yaml');
  writeFileSync(
    lab,
    stringify({
      name: 'bench-profiles',
      prefix: 'bcn-',
      sites: profiles.map((p, i) => ({ name: `p${i}`, nat: { profile: p.name }, nodes: [{ name: `p${i}-n` }] })),
    }),
  );
  const samples: Record<'plain' | 'quota', number[]> = { plain: [], quota: [] };
  let trace = '';
  let rows = 0;
  labctl('net', 'up', lab);
  try {
    for (let i = 0; i < runs; i++) {
      const r = check(lab, '--json');
      samples.plain.push(r.ms);
      rows = (JSON.parse(r.stdout) as { targets: { rows: unknown[] }[] }).targets.reduce((n, t) => n + t.rows.length, 0);
    }
    for (let i = 0; i < Math.max(1, Math.min(3, runs)); i++) samples.quota.push(check(lab, '--quota').ms);
    const t = run([...CHECK, lab], { ...process.env, LABCTL_CHECK_TRACE: '1' });
    trace = t.stderr
      .split('\n')
      .filter((l) => l.startsWith('[check'))
      .join('\n');
  } finally {
    labctl('net', 'down', lab);
    const left = netnsNames().filter((n) => n.startsWith('ns-bcn-'));
    if (left.length) console.error(`bench/check: left behind: ${left.join(' ')}`);
  }
  const loadEnd = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const s = { plain: stats(samples.plain), quota: stats(samples.quota) };
  const row = (what: string, k: 'plain' | 'quota') => `| ${what} | ${samples[k].length} | ${ms(s[k].median)} | ${ms(s[k].min)} | ${ms(s[k].max)} |`;
  const body = `
Measured ${new Date().toISOString().slice(0, 10)} on ${machineLine()}, by \`bench/check.ts --only profiles\` (wall time of whole commands, process start included). Load average at the start ${loadStart}, at the end ${loadEnd} (a shared machine: other work ran meanwhile).

A lab with one site per NAT profile (${profiles.length}: ${profiles.map((p) => p.name).join(', ')}), all checked at once: mapping, filtering, hairpinning, then 8 new mappings one after another from each node (port allocation), with pooling and port blocks read from every flow; ${rows} rows compared with the profiles in all. With \`--quota\`, each node then opens new flows one at a time until the NAT refuses one: 1024 for the carrier-grade profiles, 64 for Cloud NAT's blocks, and 2048 (the cap) where nothing is declared.

| command | runs | median | min | max |
| --- | --- | --- | --- | --- |
${row(`\`labctl check\` of one NAT of each profile (${profiles.length} NATs)`, 'plain')}
${row('the same with `--quota`', 'quota')}

- **${(s.plain.median / 1000).toFixed(2)} s** median (target: under 5 s).

Where the time of one check goes (\`LABCTL_CHECK_TRACE=1\`, milliseconds since the labctl process started):

\`\`\`
${trace}
\`\`\`
`;
  process.stdout.write(body);
  if (write) writeSection('Check of every NAT profile (`bench/check.ts --only profiles`)', body);
}

// ------------------------------------------------------------------ labctl probe

const PROBE_PREFIX = 'bcp-';
const PROBE_INET = `ns-${PROBE_PREFIX}inet`;
const PROBE_NODE_NS = `ns-${PROBE_PREFIX}home-n`;
const [PROBE_A1, PROBE_A2] = ['198.51.100.1', '198.51.100.2'];

/**
 * `labctl probe` of a lab NAT (a port-restricted cone) against `labctl stun-server` in the
 * lab's internet namespace on two addresses of its own: as root with --namespace (through
 * the probe agent), and run inside the node's namespace (in-process, as in the field).
 */
function benchProbe(): void {
  const loadStart = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const lab = join(dir, 'probe.yaml');
  writeFileSync(
    lab,
    stringify({ name: 'bench-probe', prefix: PROBE_PREFIX, sites: [{ name: 'home', nat: { type: 'port-restricted-cone' }, nodes: [{ name: 'home-n' }] }] }),
  );
  const samples: Record<'agent' | 'inside', number[]> = { agent: [], inside: [] };
  let server: ReturnType<typeof spawn> | undefined;
  let example = '';
  labctl('net', 'up', lab);
  try {
    execFileSync('ip', ['-n', PROBE_INET, 'link', 'add', 'bcpstun0', 'type', 'veth', 'peer', 'name', 'bcpstun1']);
    for (const a of [PROBE_A1, PROBE_A2]) execFileSync('ip', ['-n', PROBE_INET, 'addr', 'add', `${a}/32`, 'dev', 'bcpstun0']);
    execFileSync('ip', ['-n', PROBE_INET, 'link', 'set', 'bcpstun0', 'up']);
    server = spawn('ip', ['netns', 'exec', PROBE_INET, process.execPath, BIN, 'stun-server', '--address', PROBE_A1, '--alt-address', PROBE_A2], {
      stdio: 'ignore',
    });
    // Ready once a probe gets an answer (the first run is not counted).
    for (let i = 0; i < 50 && run([process.execPath, BIN, 'probe', '--namespace', PROBE_NODE_NS, '--server', PROBE_A1]).status !== 0; i++)
      spawnSync('sleep', ['0.2']);
    const probe = (argv: string[]) => {
      const r = run(argv);
      if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}:\n${r.stdout.slice(-3000)}\n${r.stderr}`);
      return r;
    };
    for (let i = 0; i < runs; i++) {
      const r = probe([process.execPath, BIN, 'probe', '--namespace', PROBE_NODE_NS, '--server', PROBE_A1]);
      samples.agent.push(r.ms);
      example = r.stdout;
      samples.inside.push(probe(['ip', 'netns', 'exec', PROBE_NODE_NS, process.execPath, BIN, 'probe', '--server', PROBE_A1]).ms);
    }
  } finally {
    server?.kill('SIGTERM');
    labctl('net', 'down', lab);
    const left = netnsNames().filter((n) => n.startsWith(`ns-${PROBE_PREFIX}`));
    if (left.length) console.error(`bench/check: left behind: ${left.join(' ')}`);
  }
  const loadEnd = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const s = { agent: stats(samples.agent), inside: stats(samples.inside) };
  const row = (what: string, k: 'agent' | 'inside') => `| ${what} | ${ms(s[k].median)} | ${ms(s[k].min)} | ${ms(s[k].max)} |`;
  const body = `
Measured ${new Date().toISOString().slice(0, 10)} on ${machineLine()}, by \`bench/check.ts\` (${runs} runs each; wall time of whole commands, process start included). Load average at the start ${loadStart}, at the end ${loadEnd} (a shared machine: other work ran meanwhile).

\`labctl probe\` of a lab NAT (a port-restricted cone) against \`labctl stun-server\` in the lab's internet namespace, without --lifetime: each test 3 times (filtering and hairpinning at once, then mapping over the server's 2 x 2 matrix), one after the other against the server's one port pair, with no NAT flushes.

| command | median | min | max |
| --- | --- | --- | --- |
${row('`labctl probe --namespace NS --server A1` (as root, through the probe agent)', 'agent')}
${row('`labctl probe --server A1` run inside the namespace (in-process, as in the field)', 'inside')}

- **${(s.agent.median / 1000).toFixed(2)} s** median with --namespace, **${(s.inside.median / 1000).toFixed(2)} s** inside the namespace (target: under 3 s).

The nat: block it printed:

\`\`\`
${example.slice(example.indexOf('The nat: block')).trimEnd()}
\`\`\`
`;
  process.stdout.write(body);
  if (write) writeSection('Probe (`bench/check.ts`)', body);
}

try {
  if (only === undefined || only === 'check') benchCheck();
  if (only === undefined || only === 'profiles') benchProfiles();
  if (only === undefined || only === 'probe') benchProbe();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
