// bench/scenario: what a scenario step costs beyond its own command. A lab (the article's,
// under its own names, the network alone) is brought up once; then `labctl test` runs a
// scenario of 1 and of N `exec` steps of `true` on a node, alternately, and the marginal wall
// time per step ((N steps - 1 step) / (N - 1), the progress list included) is set against the
// bare command, `nsenter --net=NS -- true` spawned and awaited by Node the way a step spawns it.
//   sudo node --import tsx bench/scenario.ts [--runs R] [--steps N] [--no-write]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineLine, ms, netnsNames, requireRoot, stats, writeSection } from './report.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'labctl.js');
const args = process.argv.slice(2);
const option = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) || fallback : fallback);
const runs = option('--runs', 7);
const N = option('--steps', 100);
const BARE = 300;
const write = !args.includes('--no-write');
const PREFIX = 'bsc-';
const NETNS = `ns-${PREFIX}c0`;

requireRoot('bench/scenario');
if (netnsNames().some((n) => n.startsWith(`ns-${PREFIX}`))) {
  console.error(`bench/scenario: namespaces ns-${PREFIX}* exist; bring the lab bench-scenario down first`);
  process.exit(1);
}
spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });

const dir = mkdtempSync(join(tmpdir(), 'labctl-bench-scenario-'));
const lab = join(dir, 'lab.yaml');
writeFileSync(lab, readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8').replace(/^name: article$/m, `name: bench-scenario\nprefix: ${PREFIX}`));
const scenario = (steps: number) => {
  const file = join(dir, `${steps}.test.yaml`);
  const lines = Array.from({ length: steps }, (_, i) => `  - { name: "step ${i + 1}", exec: { on: c0, command: ["true"] } }`);
  writeFileSync(file, `lab: ./lab.yaml\nmachines: false\nsteps:\n${lines.join('\n')}\n`);
  return file;
};
const one = scenario(1);
const many = scenario(N);

function timed(argv: string[]): { ms: number; stdout: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  const t = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms: t, stdout: r.stdout };
}

/** The bare command as a step runs it: spawned (async) and awaited. */
function spawnOnce(argv: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`${argv.join(' ')} exited ${code}`))));
  });
}

const samples = { one: [] as number[], many: [] as number[], bare: [] as number[], step: [] as number[] };
try {
  timed([process.execPath, BIN, 'net', 'up', lab]);
  // Warm-up: the code cache, the page cache.
  timed([process.execPath, BIN, 'test', one]);
  for (let i = 0; i < runs; i++) {
    const order = i % 2 ? [many, one] : [one, many];
    for (const file of order) {
      const t = timed([process.execPath, BIN, 'test', file]).ms;
      (file === one ? samples.one : samples.many).push(t);
    }
  }
  // The steps' own times, as the report gives them (argv, spawn, wait, judgement).
  const doc = JSON.parse(timed([process.execPath, BIN, 'test', many, '--json']).stdout) as { steps: { durationMs: number }[] };
  samples.step.push(...doc.steps.map((s) => s.durationMs));
  for (let i = 0; i < BARE; i++) samples.bare.push(await spawnOnce(['nsenter', `--net=/run/netns/${NETNS}`, '--', 'true']));
} finally {
  spawnSync(process.execPath, [BIN, 'net', 'down', 'bench-scenario'], { stdio: 'ignore' });
  rmSync(dir, { recursive: true, force: true });
}
if (netnsNames().some((n) => n.startsWith(`ns-${PREFIX}`))) console.error('bench/scenario: namespaces left behind');

const s = { one: stats(samples.one), many: stats(samples.many), bare: stats(samples.bare), step: stats(samples.step) };
const marginal = (s.many.median - s.one.median) / (N - 1);
const overhead = marginal - s.bare.median;
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const body = `
Measured ${new Date().toISOString().slice(0, 10)} on ${machineLine()}, by \`bench/scenario.ts\` (${runs} runs of each scenario, alternating, after a warm-up run; load average at the end ${load}). The lab (the article's, network only) was up before the runs, so \`labctl test\` used it as it was: no lab came up or went down during the timed runs.

| what | median | min | max |
| --- | --- | --- | --- |
| \`labctl test\` of 1 \`exec\` step (\`true\` on c0), whole command | ${ms(s.one.median)} | ${ms(s.one.min)} | ${ms(s.one.max)} |
| \`labctl test\` of ${N} such steps, whole command | ${ms(s.many.median)} | ${ms(s.many.min)} | ${ms(s.many.max)} |
| one step, as its report times it (${samples.step.length} steps) | ${s.step.median.toFixed(1)} ms | ${s.step.min.toFixed(1)} ms | ${s.step.max.toFixed(1)} ms |
| the bare command, \`nsenter --net=${NETNS} -- true\` spawned by Node (${BARE} times) | ${s.bare.median.toFixed(1)} ms | ${s.bare.min.toFixed(1)} ms | ${s.bare.max.toFixed(1)} ms |

- A step's wall time in a run: **${marginal.toFixed(1)} ms** ((${ms(s.many.median)} - ${ms(s.one.median)}) / ${N - 1}: the step, the progress list's line, the next step's start).
- Its overhead beyond its own command: **${overhead.toFixed(1)} ms** (target: under 50 ms). A step runs its command behind \`setpriv --pdeathsig KILL\` (exec/run.ts's spawnArgv: the command dies with labctl), one exec more than the bare command, and collects and judges its output.
`;
process.stdout.write(body);
if (write) writeSection('Scenarios (`bench/scenario.ts`)', body);
