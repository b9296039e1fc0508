// `labctl doctor` as text: one line per check, its fix under each failed one, and a
// closing line that says whether the default lab can come up here.
import { doctorExitCode, type DoctorCheck } from '../host/doctor.js';

/** ok; FAIL for a failed error (the default lab needs it); warn for a failed warning; info for what labctl only adapts to. */
export function statusWord(c: DoctorCheck): string {
  if (!c.ok) return c.severity === 'error' ? 'FAIL' : 'warn';
  return c.severity === 'info' ? 'info' : 'ok';
}

export function formatDoctor(checks: readonly DoctorCheck[]): string {
  const width = Math.max(...checks.map((c) => c.check.length));
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${statusWord(c).padEnd(4)}  ${c.check.padEnd(width)}  ${c.detail}`);
    if (c.fix) lines.push(`${' '.repeat(6 + width + 2)}fix: ${c.fix}`);
  }
  const failed = checks.filter((c) => !c.ok && c.severity === 'error');
  const warned = checks.filter((c) => !c.ok && c.severity !== 'error');
  const warnings = warned.length
    ? `; ${warned.length} warning${warned.length > 1 ? 's' : ''} (${warned.map((c) => c.check).join(', ')}): only some features need those`
    : '';
  lines.push('');
  if (doctorExitCode(checks) === 0) {
    lines.push(`Everything the default lab (machines/article.yaml) needs is here${warnings}.`);
  } else {
    lines.push(`The default lab (machines/article.yaml) cannot come up here: ${failed.map((c) => c.check).join(', ')} failed${warnings}.`);
  }
  return `${lines.join('\n')}\n`;
}
