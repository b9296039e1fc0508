// `labctl probe` for people: the measurements with their evidence, the `nat:` block that
// behaves the same (lab-file syntax), and with --lab-out a whole lab around it.
import { stringify } from 'yaml';
import { formatEndpoint } from '../stun/message.js';
import { table } from '../report/table.js';
import { labNameFor, type NatBlock, prefixFor } from './analyse.js';
import { LAB_NODE, type ProbeReport } from './run.js';

/** The site, and so the NAT (`probed-nat`), a written lab puts the measured NAT in. */
const LAB_SITE = 'probed';

/** The `nat:` block as lab-file YAML, `indent` spaces deep. */
export function natBlockYaml(nat: NatBlock, indent = 0): string {
  const pad = ' '.repeat(indent);
  return stringify({ nat }, { flowCollectionPadding: true })
    .trimEnd()
    .split('\n')
    .map((l) => pad + l)
    .join('\n');
}

function serverText(r: ProbeReport): string {
  const s = r.server;
  return `${s.given}${s.given !== formatEndpoint(s) ? ` (${formatEndpoint(s)})` : ''}, other address ${formatEndpoint(s.other)} (from ${s.otherFrom})`;
}

export function formatProbe(r: ProbeReport): string {
  const out: string[] = [];
  const from = r.from.netns ? `namespace ${r.from.netns}` : 'this host';
  out.push(
    `labctl probe: the NAT between ${from} (${r.from.hosts.join(', ') || 'no IPv4 address'}) and the STUN server ${serverText(r)}; each test run ${r.repetitions} times${r.localPort !== undefined ? `, all from inside port ${r.localPort}` : ''}`,
  );
  out.push(`outside: ${formatEndpoint(r.mapped)} (what the server saw first)`);
  out.push('');
  out.push(
    table(
      ['test', 'measured', 'evidence'],
      r.rows.map((x) => [x.test, x.measured, x.evidence]),
    )
      .trimEnd()
      .split('\n')
      .map((l) => (l ? `  ${l}` : l))
      .join('\n'),
  );
  for (const n of r.notes) out.push(`note: ${n}`);
  if (r.nat) {
    out.push('');
    out.push('The nat: block that behaves the same (lab-file syntax):');
    out.push(natBlockYaml(r.nat, 2));
  }
  if (r.notExpressible.length) {
    out.push('Measured, but not expressible in a lab file yet:');
    for (const x of r.notExpressible) out.push(`  - ${x}`);
  }
  if (r.unmeasured.length) out.push(`Could not measure: ${r.unmeasured.join('; ')}`);
  out.push(`(${(r.durationMs / 1000).toFixed(1)} s)`);
  return `${out.join('\n')}\n`;
}

/**
 * A whole lab around the measured NAT: it as a site with a node behind it, and a server on
 * the internet; names from the file's name, and a namespace prefix of their own so that the
 * lab comes up beside others. The header says where it comes from and what the NAT does
 * that the file cannot say yet.
 */
export function labYaml(r: ProbeReport, file: string, now = new Date()): string {
  if (!r.nat) throw new Error('labYaml: no nat block (mapping or filtering unknown)');
  const name = labNameFor(file);
  const lab = {
    name,
    description: `The NAT measured by labctl probe --server ${r.server.given}${r.from.netns ? ` from ${r.from.netns}` : ''}`,
    prefix: prefixFor(name),
    sites: [{ name: LAB_SITE, nat: r.nat, nodes: [{ name: LAB_NODE }] }],
    nodes: [{ name: 'server' }],
  };
  const head = [
    `# Written by \`labctl probe --server ${r.server.given}${r.from.netns ? ` --namespace ${r.from.netns}` : ''}${r.localPort !== undefined ? ` --port ${r.localPort}` : ''} --lab-out ${file}\` on ${now.toISOString().slice(0, 10)}.`,
    `# Measured from ${r.from.netns ? `namespace ${r.from.netns}` : 'a host'} (${r.from.hosts.join(', ') || '-'}); the server saw it at ${formatEndpoint(r.mapped)}.`,
    `# ${LAB_NODE} sits behind ${LAB_SITE}-nat, which behaves as measured; server sits on the internet.`,
    `#   sudo labctl net up ${file} && sudo labctl check ${file}`,
  ];
  const rows = r.rows.filter((x) => ['mapping', 'filtering', 'hairpinning', 'port allocation', 'pooling'].includes(x.test) || x.test.endsWith('lifetime'));
  head.push('# Measured:');
  for (const x of rows) head.push(`#   ${x.test}: ${x.measured}`);
  if (r.notExpressible.length) {
    head.push('# Measured, but not expressible in a lab file yet (the lab below behaves otherwise there):');
    for (const x of r.notExpressible) head.push(`#   - ${x}`);
  }
  if (r.unmeasured.length) {
    head.push("# Not measured (the lab's defaults stand):");
    for (const x of r.unmeasured) head.push(`#   - ${x}`);
  }
  return `${head.join('\n')}\n${stringify(lab, { flowCollectionPadding: true })}`;
}
