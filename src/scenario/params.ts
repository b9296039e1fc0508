// A scenario's params: named values put into its steps and into its lab file where they say
// `${NAME}`, so that one scenario (or a copy with other values) can shorten a NAT's timers,
// change a port, name a capture file.
//
// Substitution works on the parsed YAML (strings of the data, never keys), not on its text:
// a value can never add YAML structure, and nothing ever reaches a shell (commands are
// argument lists). A string that is exactly `${NAME}` takes the value with its type (a
// number stays a number: `unreplied: ${udp_timeout}`); inside a longer string the value is
// written as text. `$${` is a literal `${`. An unknown NAME, or a `${` that starts no name,
// is an error naming the field.
import type { InputIssue } from '../util/errors.js';

export type ParamValue = string | number | boolean;

export const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const WHOLE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

/** One string with its params put in; `${` that is not a param reference is reported. */
export function substituteString(text: string, params: Record<string, ParamValue>, report: (message: string) => void): ParamValue {
  if (!text.includes(`\${`)) return text;
  const whole = WHOLE.exec(text);
  if (whole) {
    const value = params[whole[1]!];
    if (value === undefined) {
      report(unknown(whole[1]!, params));
      return text;
    }
    return value;
  }
  let out = '';
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf(`\${`, i);
    if (at < 0) {
      out += text.slice(i);
      break;
    }
    // `$${`: a literal `${`.
    if (at > 0 && text[at - 1] === '$') {
      out += `${text.slice(i, at - 1)}\${`;
      i = at + 2;
      continue;
    }
    out += text.slice(i, at);
    const end = text.indexOf('}', at);
    const name = end < 0 ? '' : text.slice(at + 2, end);
    if (!PARAM_NAME.test(name)) {
      report(`has a \`\${\` that starts no parameter: write \${NAME} (NAME from params:), or $\${ for a literal \${`);
      return text;
    }
    const value = params[name];
    if (value === undefined) {
      report(unknown(name, params));
      return text;
    }
    out += String(value);
    i = end + 1;
  }
  return out;
}

function unknown(name: string, params: Record<string, ParamValue>): string {
  const known = Object.keys(params);
  return `uses \${${name}}, which params: does not define${known.length ? ` (it has ${known.join(', ')})` : ' (it defines none)'}`;
}

/**
 * The data with every string's params put in. `path` is the field of `data` ('' for the
 * whole file); problems go to `issues` with their fields.
 */
export function substituteParams(data: unknown, params: Record<string, ParamValue>, path: string, issues: InputIssue[]): unknown {
  if (typeof data === 'string') return substituteString(data, params, (message) => issues.push({ path, message }));
  if (Array.isArray(data)) return data.map((v, i) => substituteParams(v, params, `${path}[${i}]`, issues));
  if (data !== null && typeof data === 'object') {
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, substituteParams(v, params, path ? `${path}.${k}` : k, issues)]));
  }
  return data;
}

/** True when some string of the data refers to a param (or holds a `${` at all). */
export function mentionsParams(data: unknown): boolean {
  if (typeof data === 'string') return data.includes(`\${`);
  if (Array.isArray(data)) return data.some(mentionsParams);
  if (data !== null && typeof data === 'object') return Object.values(data).some(mentionsParams);
  return false;
}
