// Runs the labctl command line as a user would, and checks the host for leftovers.
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = `${ROOT}bin/labctl.js`;

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
    run(['sysctl', 'net.ipv4.ip_forward', 'net.netfilter.nf_conntrack_udp_timeout']),
  ].join('\n----\n');
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
