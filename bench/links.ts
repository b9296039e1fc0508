// bench/links: what link impairments cost.
//   - `labctl link set` on every link of a 50-site lab (100 links), one command per link, then
//     all of them in one `link set --all`, and the same 100 impairments declared in the lab
//     file (`net up` with against without);
//   - `labctl net up` of the default lab with impairments on all its links against without;
//   - `labctl check` of the default lab with 50 ms on each uplink against without.
// This machine's kernel has no sch_netem, so the first two use tbf rates (which it has); the
// check needs delay, so it runs in a VM on Debian's stock kernel under software emulation
// (test/support/stock-kernel-vm.ts), where its times are the emulator's, not a host's. Where
// the VM cannot run, the section says why.
// It uses the default lab's names on the host, so it runs those parts under the lock the e2e
// tests take (flock /tmp/labctl-e2e.lock), itself:
//   sudo node --import tsx bench/links.ts [--runs N] [--no-write]
// Wall times of whole commands, as a user sees them (process start included).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { stockKernel, withStockKernelSession } from '../test/support/stock-kernel-vm.js';
import { machineLine, ms, netnsNames, requireRoot, stats, writeSection } from './report.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'labctl.js');
const ARTICLE = join(ROOT, 'machines', 'article.yaml');
const FIFTY = join(ROOT, 'test', 'fixtures', 'good-labs', 'fifty-sites.yaml');
const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 7;
const write = !args.includes('--no-write');
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const LOCK = '/tmp/labctl-e2e.lock';

requireRoot('bench/links');

// First the VM part, which needs no lock (the VM has its own namespaces); then this script
// again under the lock the e2e tests take, for the parts that use the default lab's names
// on the host.
if (!args.includes('--vm-part')) {
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
  const file = join(mkdtempSync(join(tmpdir(), 'labctl-bench-vm-')), 'vm.md');
  writeFileSync(file, await vmSection());
  const r = spawnSync('flock', [LOCK, process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url), ...args, '--vm-part', file], { stdio: 'inherit' });
  rmSync(dirname(file), { recursive: true, force: true });
  process.exit(r.status ?? 1);
}
if (netnsNames().some((n) => ARTICLE_NS.includes(n))) {
  console.error("bench/links: the article lab's namespaces exist; bring it down first");
  process.exit(1);
}

function timed(argv: string[]): { ms: number; stdout: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 64 << 20 });
  const t = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms: t, stdout: r.stdout };
}
const labctl = (...a: string[]) => timed([process.execPath, BIN, ...a]);

/** The check with 50 ms on each uplink, in the stock-kernel VM: the section's paragraph and table. */
async function vmSection(): Promise<string> {
  // ---------------------------------------------------------------- check with 50 ms on each uplink, in the VM
  let vmPart: string;
  const kernel = await stockKernel();
  if (!kernel.available)
    vmPart = `\`check\` with 50 ms on each uplink could not be measured: it needs netem, which this host's kernel lacks, and the stock-kernel VM is unavailable here (${kernel.reason}).`;
  else {
    const vmRuns = Math.min(runs, 2);
    const delayed = '/root/article-50ms.yaml';
    const res = await withStockKernelSession(async (vm) => {
      const ok = async (argv: string[], input?: string) => {
        const r = await vm.run(argv, { timeoutMs: 180_000, ...(input !== undefined ? { input } : {}) });
        if (r.exitCode !== 0 && !(argv.includes('check') && r.exitCode === 1))
          throw new Error(`${argv.join(' ')} exited ${r.exitCode} in the VM: ${r.stdout} ${r.stderr}`);
        return r;
      };
      await ok(
        ['tee', delayed],
        `${readFileSync(ARTICLE, 'utf8')}links:\n  - { between: [c0-nat, inet], delay: 50ms }\n  - { between: [c1-nat, inet], delay: 50ms }\n`,
      );
      const out: Record<'plain' | 'delayed', { wall: number[]; own: number[]; match: boolean[] }> = {
        plain: { wall: [], own: [], match: [] },
        delayed: { wall: [], own: [], match: [] },
      };
      for (const which of ['plain', 'delayed'] as const) {
        await ok([process.execPath, BIN, 'net', 'up', which === 'plain' ? ARTICLE : delayed]);
        for (let i = 0; i < vmRuns; i++) {
          const r = await ok([process.execPath, BIN, 'check', which === 'plain' ? ARTICLE : delayed, '--json']);
          const doc = JSON.parse(r.stdout) as { durationMs: number; match: boolean };
          out[which].wall.push(r.durationMs);
          out[which].own.push(doc.durationMs);
          out[which].match.push(doc.match);
        }
        await ok([process.execPath, BIN, 'net', 'down', 'article']);
      }
      const node = (await ok([process.execPath, '-e', '0'])).durationMs;
      return { out, node, version: vm.version, accel: vm.accel };
    });
    const node = res.node;
    const s = (x: number[]) => stats(x);
    const line = (what: string, k: 'plain' | 'delayed') =>
      `| ${what} | ${ms(s(res.out[k].wall).median)} | ${ms(s(res.out[k].own).median)} (${ms(s(res.out[k].own).min)}-${ms(s(res.out[k].own).max)}) | ${res.out[k].match.every(Boolean) ? 'yes' : 'NO'} |`;
    vmPart = `\`check\` needs netem for its delay, which this host's kernel lacks: it was measured in a VM on Debian's stock kernel (${res.version}) under software emulation (${res.accel}, 1 vCPU), ${vmRuns} runs each (of 2 runs, the median shown is the larger), so its times are the emulator's, several times a host's (\`node -e 0\` alone takes ${ms(node)} there).

| \`labctl check\` of the default lab (in the VM) | wall, median | check's own time (durationMs), median (min-max) | as declared |
| --- | --- | --- | --- |
${line('ideal links', 'plain')}
${line('50 ms on each uplink (a 100 ms round trip to the STUN server)', 'delayed')}

The target is under 3 s with 50 ms on each uplink: the difference between the two rows is what the delay costs \`check\` (round-trip measurement, retransmission after 3 x RTT, filtering requests held for their tries).`;
  }

  return vmPart;
}

const dir = mkdtempSync(join(tmpdir(), 'labctl-bench-links-'));
try {
  // ---------------------------------------------------------------- 50 sites: link set on every link
  labctl('net', 'up', FIFTY);
  const views = JSON.parse(labctl('link', 'show', 'fifty', '--json').stdout) as { links: { member: { member: string }; router: { member: string } }[] }[];
  const links = views[0]!.links.map((l) => [l.member.member, l.router.member] as const);
  const perLink: number[] = [];
  const wall0 = process.hrtime.bigint();
  for (const [a, b] of links) perLink.push(labctl('link', 'set', a, b, '--rate', '20mbit', '--lab', 'fifty').ms);
  const setAllMs = Number(process.hrtime.bigint() - wall0) / 1e6;
  // The same in one command: `link set --all` (one tc batch per namespace, all at once).
  const oneCommand: number[] = [];
  for (let i = 0; i < runs; i++) oneCommand.push(labctl('link', 'set', '--all', '--rate', i % 2 ? '20mbit' : '30mbit', '--lab', 'fifty').ms);
  labctl('net', 'down', FIFTY);
  // The same 100 impairments declared: what applying them costs inside one `net up`.
  const fiftyLinked = join(dir, 'fifty-links.yaml');
  const fiftyDoc = parse(readFileSync(FIFTY, 'utf8')) as Record<string, unknown>;
  writeFileSync(fiftyLinked, stringify({ ...fiftyDoc, links: links.map(([a, b]) => ({ between: [a, b], rate: '20mbit' })) }));
  const fiftyPlain: number[] = [];
  const fiftyDeclared: number[] = [];
  for (let i = 0; i < Math.min(runs, 3); i++) {
    fiftyPlain.push(labctl('net', 'up', FIFTY).ms);
    labctl('net', 'down', FIFTY);
    fiftyDeclared.push(labctl('net', 'up', fiftyLinked).ms);
    labctl('net', 'down', fiftyLinked);
  }

  // ---------------------------------------------------------------- default lab: net up with against without
  const articleLinked = join(dir, 'article-links.yaml');
  writeFileSync(
    articleLinked,
    `${readFileSync(ARTICLE, 'utf8')}links:\n  - { between: [c0-nat, inet], rate: 20mbit }\n  - { between: [c1-nat, inet], rate: 20mbit }\n  - { between: [c0, c0-nat], rate: 50mbit }\n  - { between: [c1, c1-nat], rate: 50mbit }\n`,
  );
  const upPlain: number[] = [];
  const upLinked: number[] = [];
  for (let i = 0; i < runs; i++) {
    // Alternate the order so that neither side always runs on a warmer machine.
    for (const linked of i % 2 ? [true, false] : [false, true]) {
      (linked ? upLinked : upPlain).push(labctl('net', 'up', linked ? articleLinked : ARTICLE).ms);
      labctl('net', 'down', 'article');
    }
  }

  const vmPart = readFileSync(args[args.indexOf('--vm-part') + 1]!, 'utf8');

  const sp = stats(perLink);
  const sa = stats(oneCommand);
  const up0 = stats(upPlain);
  const up1 = stats(upLinked);
  const f0 = stats(fiftyPlain);
  const f1 = stats(fiftyDeclared);
  const body = `
Measured ${new Date().toISOString().slice(0, 10)} on ${machineLine()}, by \`bench/links.ts\` (wall time of whole commands, process start included). This host's kernel has no \`sch_netem\`, so the impairments on the host are tbf rates (20 mbit on uplinks, 50 mbit on LAN links), which it has; a netem impairment is one more \`tc qdisc replace\` of the same kind per end.

| what | result | target |
| --- | --- | --- |
| \`labctl link set A B --rate 20mbit\` on every link of a 50-site lab (${links.length} links, one command each) | ${ms(setAllMs)} in all; per command median ${ms(sp.median)} (min ${ms(sp.min)}, max ${ms(sp.max)}) | under 1 s in all |
| \`labctl link set --all --rate R\` on the same lab: every link in one command (${runs} runs) | median ${ms(sa.median)} (min ${ms(sa.min)}, max ${ms(sa.max)}) | under 1 s in all |
| the same ${links.length} impairments declared in the lab file: \`net up\` of the 50 sites with against without (${fiftyPlain.length} runs each) | ${ms(f1.median)} against ${ms(f0.median)}: ${ms(f1.median - f0.median)} more | |
| \`labctl net up\` of the default lab with rates on all 4 links against without (${runs} runs each, medians) | ${ms(up1.median)} against ${ms(up0.median)}: ${ms(up1.median - up0.median)} more | under +50 ms |

Each \`link set\` is a whole labctl process (Node's start, the lab's state read and written under its lock, one \`tc\` batch per end), so the time of ${links.length} of them in a row is mostly ${links.length} process starts; \`link set --all\` sets them all in one process (the second row), and declaring them in the lab file applies them inside one \`net up\` (the third row).

${vmPart}

Targets: \`link set\` on every link in under 1 s is ${sa.median < 1000 ? `met with \`link set --all\` (${ms(sa.median)})` : `not met (${ms(sa.median)} with \`link set --all\`)`}; as ${links.length} separate commands it takes ${ms(setAllMs)}; \`net up\` with impairments under +50 ms is ${up1.median - up0.median < 50 ? 'met' : 'not met'} (${ms(up1.median - up0.median)}, rates only); \`check\` with 50 ms on each uplink under 3 s could not be measured on a host with netem here: under software emulation the check itself takes several seconds with or without the delay.
`;
  console.log(body);
  if (write) writeSection('Link impairments', body);
} finally {
  for (const f of [FIFTY, join(dir, 'fifty-links.yaml')]) spawnSync(process.execPath, [BIN, 'net', 'down', f], { stdio: 'ignore' });
  spawnSync(process.execPath, [BIN, 'net', 'down', 'article'], { stdio: 'ignore' });
  rmSync(dir, { recursive: true, force: true });
}
