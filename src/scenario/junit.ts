// JUnit XML of a scenario run, as CI systems read it (GitHub Actions reporters, GitLab,
// Jenkins): one <testsuite> per scenario, one <testcase> per step with classname the
// scenario's name, <failure> for an expectation not met and <error> for a step that could
// not run, each with a one-line message (what was expected; what happened) and a text with
// the details; <skipped> for the steps after a failure; what commands printed in
// <system-out>/<system-err>; times in seconds.
import { hostname } from 'node:os';
import type { ScenarioRun } from './report.js';
import type { StepResult } from './verdict.js';

/** Characters XML 1.0 cannot hold at all (even escaped): C0 controls but tab, newline and CR; lone surrogates; U+FFFE/U+FFFF. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding the control characters is the point
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text that XML 1.0 can hold: what it cannot is written as \xNN (a control character, e.g. a terminal colour) or U+FFFD. */
function xmlChars(text: string): string {
  return text.replace(NOT_XML, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x20 ? `\\x${code.toString(16).toUpperCase().padStart(2, '0')}` : '\uFFFD';
  });
}

/** Element content. (`]]>` needs no care outside CDATA, but `>` is escaped anyway.) */
export function escapeText(text: string): string {
  return xmlChars(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** An attribute value in double quotes; newlines and tabs as character references, which attribute normalisation keeps. */
export function escapeAttribute(text: string): string {
  return escapeText(text).replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);

function attrs(a: Record<string, string | number | undefined>): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${escapeAttribute(String(v))}"`)
    .join('');
}

/** The one-line message of a failed step: what was expected; what happened. */
export function failureMessage(r: StepResult): string {
  return `expected ${r.expected ?? '?'}; happened: ${r.happened ?? '?'}`;
}

function testcase(r: StepResult, classname: string): string {
  const lines: string[] = [];
  const open = `    <testcase${attrs({ name: r.name, classname, time: seconds(r.durationMs) })}`;
  const body: string[] = [];
  if (r.status === 'failed') {
    const tag = r.error ? 'error' : 'failure';
    const text = [`step: ${r.name} (${r.kind})`, `expected: ${r.expected ?? '?'}`, `happened: ${r.happened ?? '?'}`, ...r.notes.map((n) => `note: ${n}`)].join(
      '\n',
    );
    body.push(`      <${tag}${attrs({ message: failureMessage(r), type: r.kind })}>${escapeText(text)}</${tag}>`);
  } else if (r.status === 'skipped') {
    body.push(`      <skipped${attrs({ message: r.skipped ?? 'skipped' })}/>`);
  }
  const out = [...(r.status === 'passed' && r.notes.length ? r.notes : []), ...(r.stdout ? [r.stdout] : [])].join('\n');
  if (out) body.push(`      <system-out>${escapeText(out)}</system-out>`);
  if (r.stderr) body.push(`      <system-err>${escapeText(r.stderr)}</system-err>`);
  if (!body.length) lines.push(`${open}/>`);
  else lines.push(`${open}>`, ...body, '    </testcase>');
  return lines.join('\n');
}

export function junitXml(run: ScenarioRun): string {
  const counts = {
    tests: run.steps.length,
    failures: run.steps.filter((s) => s.status === 'failed' && !s.error).length,
    errors: run.steps.filter((s) => s.status === 'failed' && s.error).length,
    skipped: run.steps.filter((s) => s.status === 'skipped').length,
  };
  const properties = [
    ['file', run.file],
    ['lab', run.lab],
    ['mode', run.mode],
    ...Object.entries(run.params).map(([k, v]) => [`param.${k}`, String(v)]),
    ...run.captures.map((c) => ['capture', c]),
    ...(run.interrupted ? [['interrupted', run.interrupted]] : []),
  ];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites${attrs({ name: 'labctl test', ...counts, time: seconds(run.durationMs) })}>`,
    `  <testsuite${attrs({ name: run.scenario, ...counts, time: seconds(run.durationMs), timestamp: run.startedAt.replace(/\.\d+Z$/, ''), hostname: hostname() })}>`,
    '    <properties>',
    ...properties.map(([name, value]) => `      <property${attrs({ name, value })}/>`),
    '    </properties>',
    ...run.steps.map((r) => testcase(r, run.scenario)),
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
