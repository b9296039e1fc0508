// Shared by the benchmarks: machine facts and replacing one section of BENCHMARKS.md.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

export const BENCHMARKS = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));

export function machineLine(): string {
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  let os = '';
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch {
    /* no os-release */
  }
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory, ${os}, kernel ${kernel}, Node ${process.version}`;
}

/** Replaces (or appends) the section that starts with `## title`, up to the next `## `. */
export function writeSection(title: string, body: string): void {
  const head = `## ${title}`;
  let text = existsSync(BENCHMARKS)
    ? readFileSync(BENCHMARKS, 'utf8')
    : '# Benchmarks\n\nMeasured with the scripts in bench/; each section says on what machine and when.\n';
  const start = text.indexOf(`\n${head}\n`);
  const section = `\n${head}\n\n${body.trim()}\n`;
  if (start < 0) text = `${text.trimEnd()}\n${section}`;
  else {
    const next = text.indexOf('\n## ', start + head.length + 2);
    text = text.slice(0, start) + section + (next < 0 ? '' : text.slice(next));
  }
  writeFileSync(BENCHMARKS, text);
}

export function stats(samples: number[]): { median: number; min: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}

export const ms = (x: number) => `${Math.round(x)} ms`;

/** Names of the host's network namespaces. */
export function netnsNames(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

/** Exits with a message unless this runs as root (the benchmarks create namespaces and mounts). */
export function requireRoot(bench: string): void {
  if (process.getuid?.() === 0) return;
  console.error(`${bench}: run as root (it creates network namespaces)`);
  process.exit(1);
}
