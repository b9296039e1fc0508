// Configures a lab's namespaces once they exist: in each, addresses and routes (`ip -n NS
// -batch`), then the NAT rules (`nft -f`), then the sysctls. The rules load after the addresses
// because they name interfaces, and before the sysctls because the UDP timeouts exist only
// once conntrack is in use.
//
// One small shell process starts all of these commands, in a few parallel lanes, instead of
// labctl starting each: on this kind of VM every process labctl (a large process) starts
// blocks it for ~10 ms, and a 50-site lab needs ~250 of them. The script is a constant; the
// namespace names and sysctl assignments reach it as positional arguments, never as shell
// text. Batches and rulesets reach it as files (their paths are the arguments): the kernel
// refuses any one argument over 128 KiB (MAX_ARG_STRLEN, E2BIG), and a NAT with many
// forwards has a ruleset larger than that.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { CommandError, run } from '../exec/run.js';
import { NETNS_DIR } from '../host/netns.js';
import { sysctlPath } from '../util/sysctl.js';

export interface NamespaceJob {
  netns: string;
  /** `ip -batch` text: addresses, routes, links up */
  ipBatch: string;
  /** nftables ruleset, loaded atomically */
  ruleset?: string;
  /** sysctls as [key, value], like ['net.ipv4.ip_forward', '1'] (neither holds a space) */
  sysctls: [string, string][];
}

// Runs inside a namespace (under nsenter): addresses and routes from the batch file ($1),
// the ruleset file ($2, may be empty: no NAT rules; `nft -f` loads it as one transaction),
// then each sysctl (PATH=VALUE under /proc/sys, written by the shell itself: /proc/sys/net
// shows the values of the namespace of the process that opens it).
export const IN_NAMESPACE_SCRIPT = [
  'ip -batch "$1" || { echo "labctl: ip -batch (addresses and routes) failed" >&2; exit 1; }',
  'if [ -n "$2" ]; then nft -f "$2" || { echo "labctl: nft (the NAT ruleset) failed" >&2; exit 1; }; fi',
  'shift 2',
  'for kv; do',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell script: ${...} is for sh
  '  printf "%s\\n" "${kv##*=}" >"${kv%=*}" || { echo "labctl: sysctl ${kv#/proc/sys/} failed" >&2; exit 1; }',
  'done',
].join('\n');

// Arguments after the script: OUTDIR LANES INNER, then four per job: NETNS BATCH RULESET
// SYSCTLS (BATCH, RULESET: paths of files, RULESET empty for none; SYSCTLS: PATH=VALUE
// words; labctl makes both parts, neither holds a space; INNER: the script above). Lane L
// runs jobs L, L+LANES, L+2*LANES, ... one after another; the lanes run at once. Each job's
// output goes to OUTDIR/INDEX, and "INDEX STATUS" to standard output when it ends. A
// namespace with neither rules nor sysctls takes one process (ip -n); the others take four
// (nsenter, sh, ip, nft).
const LANES_SCRIPT = [
  'set -f',
  'out=$1; lanes=$2; inner=$3; shift 3',
  'lane=0',
  'while [ "$lane" -lt "$lanes" ]; do',
  '  (',
  '    i=0',
  '    while [ "$#" -ge 4 ]; do',
  '      if [ $((i % lanes)) -eq "$lane" ]; then',
  '        if [ -z "$3" ] && [ -z "$4" ]; then',
  `          ip -n "$1" -batch "$2" >"$out/$i" 2>&1`,
  '        else',
  `          nsenter --net="${NETNS_DIR}/$1" -- /bin/sh -c "$inner" labctl-configure "$2" "$3" $4 >"$out/$i" 2>&1`,
  '        fi',
  '        echo "$i $?"',
  '      fi',
  '      i=$((i + 1))',
  '      shift 4',
  '    done',
  '  ) &',
  '  lane=$((lane + 1))',
  'done',
  'wait',
].join('\n');

/** How many jobs run at once: the work is CPU-bound process starts and kernel locks. */
const CONFIGURE_LANES = Number(process.env.LABCTL_NET_LANES) || Math.max(2, availableParallelism() * 2);

/**
 * Keeps one launcher's arguments well under the kernel's limit for all of them (ARG_MAX,
 * usually 2 MiB). No single argument comes near its own limit (128 KiB): the largest is a
 * job's sysctl words, a few hundred bytes; batches and rulesets go in files.
 */
const MAX_ARGS_BYTES = 512 * 1024;

/** The job's sysctls as the script takes them: /proc/sys/PATH=VALUE words. */
export function sysctlWords(job: NamespaceJob): string {
  return job.sysctls
    .map(([key, value]) => {
      if (!/^[a-z0-9_.-]+$/i.test(key) || !/^[0-9]+$/.test(value)) throw new Error(`sysctl ${key}=${value}: labctl sets only numeric values of plain keys`);
      return `${sysctlPath(key)}=${value}`;
    })
    .join(' ');
}

/** Lines of a batch or ruleset, however it ends. */
const lineCount = (text: string) => (text ? text.replace(/\n$/, '').split('\n').length : 0);

/** What a job runs, as errors show it (its files are gone by then: what they held instead). */
export function jobDisplay(job: NamespaceJob): string[] {
  const steps = [
    `ip -batch <batch of ${lineCount(job.ipBatch)} lines>`,
    ...(job.ruleset ? [`nft -f <ruleset of ${lineCount(job.ruleset)} lines>`] : []),
    ...(job.sysctls.length ? [`sysctl ${job.sysctls.map(([k, v]) => `${k}=${v}`).join(' ')}`] : []),
  ];
  return ['nsenter', `--net=${NETNS_DIR}/${job.netns}`, '--', `sh (${steps.join('; ')})`];
}

export function jobStep(job: NamespaceJob): string {
  const parts = ['addresses', 'routes', ...(job.ruleset ? ['NAT rules'] : []), ...(job.sysctls.length ? ['sysctls'] : [])];
  return `${parts.join(', ')} in ${job.netns}`;
}

/**
 * The launcher's four arguments for job `n` (see LANES_SCRIPT), whose batch and ruleset
 * configureNamespaces writes to files in `dir`, named after n.
 */
export function jobArgs(job: NamespaceJob, n: number, dir: string): string[] {
  return [job.netns, join(dir, `${n}.ip`), job.ruleset ? join(dir, `${n}.nft`) : '', sysctlWords(job)];
}

/** Splits jobs, given as their launcher arguments, into launcher-sized groups of job indices, in order. */
export function chunkJobs(argsOf: string[][], maxBytes = MAX_ARGS_BYTES): number[][] {
  const chunks: number[][] = [];
  let current: number[] = [];
  let size = 0;
  argsOf.forEach((args, n) => {
    // What ARG_MAX counts: each argument's bytes, its NUL and its pointer.
    const bytes = args.reduce((sum, a) => sum + Buffer.byteLength(a) + 1 + 8, 0);
    if (current.length && size + bytes > maxBytes) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(n);
    size += bytes;
  });
  if (current.length) chunks.push(current);
  return chunks;
}

/** Runs every job; on failure throws the first failed job's error (in job order) once all have ended. */
export async function configureNamespaces(jobs: NamespaceJob[], workDir: string, lanes = CONFIGURE_LANES): Promise<void> {
  if (!jobs.length) return;
  // workDir is the lab's own (removed by `net down` too, should this process be killed).
  mkdirSync(workDir, { recursive: true, mode: 0o700 });
  // mkdtemp makes it 0700 and the files are 0600: no other user reads or swaps what root loads.
  const out = mkdtempSync(join(workDir, 'configure-'));
  try {
    const argsOf = jobs.map((job, n) => {
      const args = jobArgs(job, n, out);
      writeFileSync(args[1]!, job.ipBatch, { mode: 0o600 });
      if (job.ruleset) writeFileSync(args[2]!, job.ruleset, { mode: 0o600 });
      return args;
    });
    const chunks = chunkJobs(argsOf);
    const perChunk = Math.max(1, Math.floor(lanes / chunks.length));
    const failed: { job: NamespaceJob; status: number; output: string }[] = [];
    await Promise.all(
      chunks.map(async (indices, c) => {
        const dir = join(out, String(c));
        mkdirSync(dir);
        const chunk = indices.map((n) => jobs[n]!);
        const args = indices.flatMap((n) => argsOf[n]!);
        const r = await run(['/bin/sh', '-c', LANES_SCRIPT, 'labctl-configure', dir, String(Math.min(perChunk, chunk.length)), IN_NAMESPACE_SCRIPT, ...args], {
          step: 'configure the namespaces',
          display: ['sh', `(configure ${chunk.length} namespaces in ${Math.min(perChunk, chunk.length)} lanes)`],
        });
        const statuses = new Map<number, number>();
        for (const line of r.stdout.split('\n')) {
          const m = /^(\d+) (\d+)$/.exec(line.trim());
          if (m) statuses.set(Number(m[1]), Number(m[2]));
        }
        chunk.forEach((job, i) => {
          const status = statuses.get(i);
          if (status === 0) return;
          let output = '';
          try {
            output = readFileSync(join(dir, String(i)), 'utf8');
          } catch {
            output = 'did not run';
          }
          failed.push({ job, status: status ?? -1, output });
        });
      }),
    );
    if (failed.length) {
      failed.sort((a, b) => jobs.indexOf(a.job) - jobs.indexOf(b.job));
      const first = failed[0]!;
      throw new CommandError(jobStep(first.job), jobDisplay(first.job), first.status, first.output, '');
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
