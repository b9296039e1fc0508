// Host commands on network namespaces: the only place that creates or deletes them.
import { statSync } from 'node:fs';
import { run } from '../exec/run.js';
import { listDir } from '../util/fs.js';

export const NETNS_DIR = '/run/netns';

/** Identity of a named namespace (its nsfs inode): tells a namespace from a new one of the same name; undefined when it is gone. */
export function netnsIdentity(netns: string): string | undefined {
  try {
    const s = statSync(`${NETNS_DIR}/${netns}`);
    return `${s.dev}:${s.ino}`;
  } catch {
    return undefined;
  }
}

/** Names of the host's named network namespaces. */
export function listNetns(): string[] {
  return listDir(NETNS_DIR);
}

/** A command run inside a namespace. nsenter is cheaper than `ip netns exec` (no mount namespace). */
export function inNetns(netns: string, command: string[]): string[] {
  return ['nsenter', `--net=${NETNS_DIR}/${netns}`, '--', ...command];
}

/** Lines for `ip -batch -`; names are validated ([a-z0-9-]), so none holds a space. */
export function batchText(lines: string[][]): string {
  return `${lines.map((l) => l.join(' ')).join('\n')}\n`;
}

export async function deleteNetns(names: string[], step = 'delete namespaces'): Promise<void> {
  const present = new Set(listNetns());
  const doomed = names.filter((n) => present.has(n));
  if (doomed.length === 0) return;
  // -force: go on past a namespace that vanished meanwhile.
  await run(['ip', '-force', '-batch', '-'], { step, input: batchText(doomed.map((n) => ['netns', 'del', n])), allowFailure: true });
  const still = listNetns().filter((n) => doomed.includes(n));
  if (still.length) throw new Error(`${step}: could not delete ${still.join(', ')}`);
}
