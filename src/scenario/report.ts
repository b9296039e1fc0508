// What a scenario run reports: the run as one document (--json, and what junit.ts writes),
// and the summary printed after the progress list.
import { EXIT_FAILED, EXIT_INTERRUPTED } from '../util/errors.js';
import { formatSeconds } from './processes.js';
import type { StepResult } from './verdict.js';

export interface ScenarioRun {
  scenario: string;
  file: string;
  lab: string;
  /** Where commands ran: the lab's machines, or the network alone (namespaces, the host's tools). */
  mode: 'machines' | 'network';
  /** This run brought the lab up (and so takes it down at the end, unless --keep). */
  broughtUp: boolean;
  /** What became of the lab at the end. */
  labAtEnd: 'taken down' | 'kept' | 'left as it was';
  params: Record<string, string | number | boolean>;
  startedAt: string;
  durationMs: number;
  steps: StepResult[];
  /** "FILE: N packets captured ..." per capture of the run or of a step. */
  captures: string[];
  /** Why no step ran: the lab could not be brought up. */
  setupError?: string;
  /** The signal that stopped the run. */
  interrupted?: string;
  /** Problems of the clean-up at the end (the lab could not be taken down). */
  cleanupErrors: string[];
  passed: boolean;
  exitCode: number;
}

/** 0 every step passed, 1 a step failed (or the lab could not come up), 130 interrupted; a set-up error keeps its own code. */
export function runExitCode(r: Pick<ScenarioRun, 'steps' | 'interrupted' | 'setupError' | 'cleanupErrors'>, setupExitCode?: number): number {
  if (r.interrupted) return EXIT_INTERRUPTED;
  if (r.setupError !== undefined) return setupExitCode ?? EXIT_FAILED;
  if (r.steps.some((s) => s.status === 'failed') || r.cleanupErrors.length) return EXIT_FAILED;
  return 0;
}

export function counts(steps: StepResult[]): { passed: number; failed: number; skipped: number } {
  return {
    passed: steps.filter((s) => s.status === 'passed').length,
    failed: steps.filter((s) => s.status === 'failed').length,
    skipped: steps.filter((s) => s.status === 'skipped').length,
  };
}

/** The summary after the progress list: the verdict, each failure with what was expected and what happened, the lab and the reports. */
export function formatSummary(r: ScenarioRun, written: string[] = []): string {
  const c = counts(r.steps);
  const parts = [`${c.passed} passed`, ...(c.failed ? [`${c.failed} failed`] : []), ...(c.skipped ? [`${c.skipped} skipped`] : [])];
  const verdict = r.interrupted ? `interrupted (${r.interrupted})` : r.setupError !== undefined ? 'could not start' : r.passed ? 'PASSED' : 'FAILED';
  const lines = [
    `scenario ${r.scenario}: ${verdict}: ${parts.join(', ')} in ${formatSeconds(r.durationMs)} (lab ${r.lab}, ${r.mode === 'machines' ? 'machines' : 'network only'})`,
  ];
  if (r.setupError !== undefined) lines.push(`  the lab could not be brought up: ${r.setupError.replace(/\n/g, '\n    ')}`);
  for (const s of r.steps.filter((x) => x.status === 'failed')) {
    lines.push(`  ✖ ${s.name} (${s.kind})`, `      expected: ${s.expected ?? '?'}`, `      happened: ${s.happened ?? '?'}`);
    for (const n of s.notes) lines.push(`      ${n}`);
  }
  for (const c of r.captures) lines.push(`  capture ${c}`);
  for (const e of r.cleanupErrors) lines.push(`  clean-up: ${e}`);
  if (r.labAtEnd === 'kept') lines.push(`  lab "${r.lab}" is still up (--keep); \`labctl down ${r.lab}\` removes it`);
  else if (r.labAtEnd === 'taken down') lines.push(`  lab "${r.lab}" taken down`);
  for (const w of written) lines.push(`  ${w}`);
  return `${lines.join('\n')}\n`;
}
