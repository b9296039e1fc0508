// Runs the labctl command line as a user would, and checks the host for leftovers.
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { filesUnder } from './files.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = `${ROOT}bin/labctl.js`;

// bin/labctl.js runs the bundle in dist/ whenever one exists. `npm test` builds first, but
// one test file run by hand after an edit would test the old bundle: rebuild it here when
// any source is newer, so that the tests always run the code in src/.
function ensureFreshBuild(): void {
  let built = 0;
  try {
    built = statSync(join(ROOT, 'dist', 'bundle', 'labctl.cjs')).mtimeMs;
  } catch {
    // not built: bin/labctl.js runs the sources through tsx
    return;
  }
  if (Math.max(0, ...filesUnder(join(ROOT, 'src')).map((f) => statSync(f).mtimeMs)) <= built) return;
  process.stderr.write('# src/ is newer than dist/bundle: npm run build\n');
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}
ensureFreshBuild();

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function labctl(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [BIN, ...args], {
    reject: false,
    stdin: 'ignore',
    env: options.env ?? {},
    timeout: options.timeoutMs ?? 120_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Like labctl() but fails with the command's output when it does not exit 0. */
export async function labctlOk(args: string[], options: { env?: Record<string, string> } = {}): Promise<CliResult> {
  const r = await labctl(args, options);
  if (r.exitCode !== 0) throw new Error(`labctl ${args.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

export function netnsList(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

/** Shell-free helper: runs argv in a namespace and returns stdout. */
export function inNs(netns: string, argv: string[]): string {
  return execFileSync('ip', ['netns', 'exec', netns, ...argv], { encoding: 'utf8' });
}

/** A fingerprint of the host's own network namespace: links, addresses, routes, rules, forwarding. */
export function hostNetworkFingerprint(): string {
  const run = (argv: string[]) => {
    try {
      return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
    } catch (e) {
      return `error: ${String(e)}`;
    }
  };
  return [
    run(['ip', '-o', 'link', 'show']).replace(/\\\s+link\/.*$/gm, ''),
    run(['ip', '-o', 'addr', 'show']),
    run(['ip', 'route', 'show', 'table', 'all']),
    run(['nft', 'list', 'ruleset']),
    // every sysctl labctl sets in its NAT namespaces (-e: the bridge ones exist only with br_netfilter)
    run([
      'sysctl',
      '-e',
      'net.ipv4.ip_forward',
      'net.netfilter.nf_conntrack_udp_timeout',
      'net.netfilter.nf_conntrack_udp_timeout_stream',
      'net.bridge.bridge-nf-call-iptables',
      'net.bridge.bridge-nf-call-ip6tables',
      'net.bridge.bridge-nf-call-arptables',
    ]),
  ].join('\n----\n');
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
