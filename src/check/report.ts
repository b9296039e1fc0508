// `labctl check` as text: one table per NAT (declared, measured, match, evidence).
import { table } from '../report/table.js';
import type { CheckReport, TargetReport } from './model.js';

/** What each part of a check (behaviour, --pairs, --lifetime) contributes to the verdict. */
export interface CheckOutcome {
  /** false: something differs from what was declared or predicted. */
  match?: boolean;
  /** What could not be measured at all. */
  unmeasured?: string[];
}

/**
 * The exit code of `labctl check` from its parts: 2 when anything could not be measured (its
 * verdict is missing: an error, even if something else differs), else 1 when anything
 * differs, else 0. Pure.
 */
export function checkExitCode(parts: CheckOutcome[]): 0 | 1 | 2 {
  if (parts.some((p) => p.unmeasured?.length)) return 2;
  return parts.every((p) => p.match !== false) ? 0 : 1;
}

const mark = (m: boolean | undefined) => (m === undefined ? '-' : m ? 'yes' : 'NO');

export function serverLine(r: Pick<CheckReport, 'server'>): string {
  const s = r.server;
  if (s.external) return `third-party STUN server ${s.addresses[0]}:${s.ports[0]} (other address ${s.addresses[1]}:${s.ports[1]}), seen from ${s.netns}`;
  const extra = s.portPairs > 1 ? ` (+${s.portPairs - 1} more port pairs so that concurrent probes never share a remote endpoint)` : '';
  return `STUN server in ${s.netns} on ${s.addresses.join(' and ')}, ports ${s.ports.join('/')}${extra}`;
}

function formatTarget(t: TargetReport): string {
  const via = t.probe.node ? `${t.probe.node} (${t.probe.netns})` : t.probe.netns;
  const verdict = t.match === undefined ? 'nothing declared to compare with' : t.match ? 'behaves as declared' : 'DIFFERS from its declaration';
  const head = `${t.name}: probed from ${via}${t.measured.outsideAddress ? `, outside address ${t.measured.outsideAddress}` : ''} -- ${verdict}`;
  const rows = t.rows.map((r) => [r.test, r.declared ?? '-', r.measured, mark(r.match), r.evidence]);
  const body = table(['test', 'declared', 'measured', 'match', 'evidence'], rows)
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
  const notes = t.notes.map((n) => `  note: ${n}\n`).join('');
  return `${head}\n${body}${notes}`;
}

export function formatCheck(r: CheckReport): string {
  const lines: string[] = [];
  lines.push(`labctl check${r.lab ? ` of lab "${r.lab}"` : ''}: ${serverLine(r)}; each test run ${r.repetitions} times`);
  lines.push('');
  for (const t of r.targets) lines.push(formatTarget(t));
  const differ = r.targets.filter((t) => t.match === false);
  const declared = r.targets.filter((t) => t.match !== undefined);
  if (declared.length === 0) lines.push(`measured ${r.targets.length} NAT view(s); nothing declared to compare with`);
  else if (differ.length === 0) lines.push(`all ${declared.length} NAT(s) behave as declared (${(r.durationMs / 1000).toFixed(1)} s)`);
  else lines.push(`${differ.length} of ${declared.length} NAT(s) differ from their declaration: ${differ.map((t) => t.name).join(', ')}`);
  return `${lines.join('\n')}\n`;
}
