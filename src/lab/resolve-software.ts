// Resolution stage "machine software": what the lab file says runs in each machine
// (machine-schema.ts's keys on a node, a NAT router, an internet node or the internet),
// checked beyond what the schema can say and attached to the lab's members as
// MachineSoftware. Host paths are made absolute against the lab file's directory here; that
// they exist is checked before `up` (sources.ts), since resolution reads no files.
import { dirname, isAbsolute, posix, resolve } from 'node:path';
import { MACHINE_SOFTWARE_KEYS, type MachineSoftwareFile } from './machine-schema.js';
import type { Internet, Lab, MachineSoftware, Nat, Node } from './model.js';
import type { Report } from './resolve.js';
import type { LabFile } from './schema.js';

/** Where labctl binds its generated files into every machine (machine/software.ts). */
export const RESERVED_MACHINE_DIR = '/run/labctl';
const DEFAULT_FILE_MODE = 0o644;

/** The lab member a lab file entry declares, with that entry's field path. */
interface Declared {
  path: string;
  entry: MachineSoftwareFile;
  member: Nat | Node | Internet;
  /** Why it has no machine, when it has none. */
  noMachine: string;
}

export function resolveSoftware(file: LabFile, lab: Lab, report: Report): Lab {
  const declared: Declared[] = [];
  if (file.internet)
    declared.push({ path: 'internet', entry: file.internet, member: lab.internet, noMachine: 'the internet has no machine unless internet.machine: true' });
  (file.sites ?? []).forEach((s, i) => {
    if (s.nat) declared.push({ path: `sites[${i}].nat`, entry: s.nat, member: lab.nats[i]!, noMachine: 'this NAT router has machine: false' });
    (s.nodes ?? []).forEach((n, j) => {
      const node = lab.nodes.find((x) => x.name === n.name)!;
      declared.push({ path: `sites[${i}].nodes[${j}]`, entry: n, member: node, noMachine: 'this node has machine: false' });
    });
  });
  (file.nodes ?? []).forEach((n, k) => {
    const node = lab.nodes.find((x) => x.name === n.name)!;
    declared.push({ path: `nodes[${k}]`, entry: n, member: node, noMachine: 'this node has machine: false' });
  });

  const software = new Map<string, MachineSoftware>();
  const baseDir = dirname(resolve(lab.source));
  for (const d of declared) {
    const given = MACHINE_SOFTWARE_KEYS.filter((k) => d.entry[k] !== undefined);
    if (!given.length) continue;
    if (!d.member.machine) {
      for (const k of given) report(`${d.path}.${k}`, `needs a machine: ${d.noMachine}`);
      continue;
    }
    software.set(d.member.name, resolveEntry(d.entry, d.path, baseDir, report));
  }
  const attach = <T extends Nat | Node | Internet>(m: T): T => {
    const s = software.get(m.name);
    return s ? { ...m, software: s } : m;
  };
  return { ...lab, internet: attach(lab.internet), nats: lab.nats.map(attach), nodes: lab.nodes.map(attach) };
}

function resolveEntry(entry: MachineSoftwareFile, at: string, baseDir: string, report: Report): MachineSoftware {
  const hostPath = (p: string) => (isAbsolute(p) ? resolve(p) : resolve(baseDir, p));
  const seen = (kind: string) => {
    const first = new Map<string, string>();
    return (key: string, path: string, what: string) => {
      const earlier = first.get(key);
      if (earlier !== undefined) report(path, `duplicate ${kind} "${key}" (already at ${earlier}): ${what}`);
      else first.set(key, path);
    };
  };

  const bindTarget = seen('bind target');
  const binds = (entry.binds ?? []).map((b, i) => {
    const path = `${at}.binds[${i}]`;
    const to = machinePath(b.to, `${path}.to`, report);
    bindTarget(to, `${path}.to`, 'one path in the machine takes one bind');
    return { from: hostPath(b.from), to, readonly: b.readonly ?? false };
  });

  const filePath = seen('file path');
  const files = (entry.files ?? []).map((f, i) => {
    const path = `${at}.files[${i}]`;
    const target = machinePath(f.path, `${path}.path`, report);
    filePath(target, `${path}.path`, 'one file per path');
    if ((f.content === undefined) === (f.from === undefined))
      report(path, 'give exactly one of content (the text) or from (a host file, relative to the lab file)');
    if (typeof f.mode === 'number') report(`${path}.mode`, 'must be an octal mode in quotes, e.g. "0644" (YAML reads 0644 unquoted as the number 644)');
    const mode = typeof f.mode === 'string' ? Number.parseInt(f.mode, 8) : DEFAULT_FILE_MODE;
    return { path: target, ...(f.content !== undefined ? { content: f.content } : {}), ...(f.from !== undefined ? { from: hostPath(f.from) } : {}), mode };
  });

  const serviceName = seen('service name');
  const services = (entry.services ?? []).map((s, i) => {
    const path = `${at}.services[${i}]`;
    if (s.name.startsWith('labctl-')) report(`${path}.name`, 'names starting with "labctl-" are kept for labctl\'s own units in the machine');
    else if (s.name.endsWith('.service')) report(`${path}.name`, `is the unit's name without ".service" (here: ${s.name.slice(0, -'.service'.length)})`);
    else if (s.name.startsWith('.') || s.name.startsWith('-')) report(`${path}.name`, 'must not start with "." or "-"');
    serviceName(s.name, `${path}.name`, 'each becomes the unit NAME.service');
    checkProgram(s.command, `${path}.command`, report);
    // systemd runs an absolute path, or looks a bare name up in its own PATH; nothing else.
    if (s.command[0]?.includes('/') && !s.command[0].startsWith('/'))
      report(`${path}.command[0]`, 'must be an absolute path in the machine (e.g. /opt/app/server) or a program name looked up in PATH, not a relative path');
    return { name: s.name, command: s.command, restart: s.restart ?? 'on-failure' };
  });

  const commands = (entry.commands ?? []).map((c, i) => {
    checkProgram(c, `${at}.commands[${i}]`, report);
    return c;
  });

  const env = Object.fromEntries(Object.entries(entry.env ?? {}).map(([k, v]) => [k, String(v)]));
  return { ...(entry.image ? { image: entry.image } : {}), binds, files, env, services, commands };
}

/** A path inside the machine, normalised; `..` and labctl's own directory are refused. */
function machinePath(path: string, at: string, report: Report): string {
  if (path.split('/').includes('..')) report(at, 'must not contain ".."');
  const normal = posix.normalize(path).replace(/(.)\/$/, '$1');
  if (normal === '/') report(at, 'must be a path below /, not / itself');
  if (normal === RESERVED_MACHINE_DIR || normal.startsWith(`${RESERVED_MACHINE_DIR}/`))
    report(at, `${RESERVED_MACHINE_DIR} is labctl's own directory in the machine`);
  return normal;
}

function checkProgram(argv: string[], at: string, report: Report): void {
  if (!argv[0]) report(`${at}[0]`, 'must name the program');
}
