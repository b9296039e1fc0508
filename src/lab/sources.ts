// The host paths a lab file names for its machines (binds' and files' `from:`), checked
// where they are: `labctl up` refuses a lab whose paths are missing before it creates
// anything, and `labctl validate` says the same. Kept out of resolution (resolve.ts), which
// reads nothing but the lab file's text: a lab whose build output does not exist yet still
// resolves, draws (`labctl graph`) and comes down.
import { statSync } from 'node:fs';
import { UsageError, type InputIssue } from '../util/errors.js';
import { type MachineSoftware, members, type Lab } from './model.js';

/** Where in the lab file each member's software was declared (as resolve-software.ts reads it). */
function declaredAt(lab: Lab): Map<string, string> {
  const at = new Map<string, string>();
  at.set(lab.internet.name, 'internet');
  const sites = [...new Set(lab.nats.map((n) => n.site))];
  for (const [i, n] of lab.nats.entries()) at.set(n.name, `sites[${i}].nat`);
  for (const [i, site] of sites.entries()) {
    for (const [j, n] of lab.nodes.filter((x) => x.site === site).entries()) at.set(n.name, `sites[${i}].nodes[${j}]`);
  }
  for (const [k, n] of lab.nodes.filter((x) => x.site === undefined).entries()) at.set(n.name, `nodes[${k}]`);
  return at;
}

/** Every missing or unusable host path of the lab's machines, each naming its field. */
export function softwareSourceIssues(lab: Lab): InputIssue[] {
  const issues: InputIssue[] = [];
  const at = declaredAt(lab);
  for (const m of members(lab)) {
    const software: MachineSoftware | undefined = m.software;
    if (!software) continue;
    const where = at.get(m.name) ?? m.name;
    software.binds.forEach((b, i) => {
      const problem = pathProblem(b.from, 'any');
      if (problem) issues.push({ path: `${where}.binds[${i}].from`, message: `${b.from} ${problem}` });
    });
    software.files.forEach((f, i) => {
      const problem = f.from === undefined ? undefined : pathProblem(f.from, 'file');
      if (problem) issues.push({ path: `${where}.files[${i}].from`, message: `${f.from} ${problem}` });
    });
  }
  return issues;
}

/** Throws UsageError (exit 2) naming every missing host path of the lab's machines. */
export function checkSoftwareSources(lab: Lab): void {
  const issues = softwareSourceIssues(lab);
  if (issues.length) throw UsageError.forFile(lab.source, issues);
}

function pathProblem(path: string, want: 'any' | 'file'): string | undefined {
  try {
    const st = statSync(path);
    if (want === 'file' && !st.isFile()) return 'is not a regular file';
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist (a path relative to the lab file)' : `cannot be read: ${code ?? String(e)}`;
  }
}
