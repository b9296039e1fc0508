// The NAT profiles (lab/nat-profiles.ts) for people: `labctl nat profiles` lists every value
// with its source, and the README's "NAT profiles" section is formatProfilesMarkdown()'s
// output (a unit test keeps the two equal).
import { SHORT } from '../lab/behaviour.js';
import { type Citation, isCited, NAT_PROFILES, type NatProfile, type NatProfileValues, PROFILE_FIELDS, type ProfileField } from '../lab/nat-profiles.js';

/** Each field as the lab file's `nat:` writes it, so that a listing says what to override. */
export const FIELD_KEYS: Record<ProfileField, string> = {
  mapping: 'mapping',
  filtering: 'filtering',
  hairpinning: 'hairpinning',
  portAllocation: 'port-allocation',
  udpUnreplied: 'udp-timeouts.unreplied',
  udpStream: 'udp-timeouts.stream',
  tcpEstablished: 'tcp-timeouts.established',
  tcpTransitory: 'tcp-timeouts.transitory',
  outside: 'outside',
  pooling: 'pooling',
  ports: 'ports',
  portBlock: 'port-block',
  quota: 'quota',
};

/** One value as a lab file writes it (or "none"). */
export function formatProfileValue<K extends ProfileField>(field: K, value: NatProfileValues[K]): string {
  if (value === null) return 'none';
  switch (field) {
    case 'hairpinning':
      return value ? 'true' : 'false';
    case 'udpUnreplied':
    case 'udpStream':
    case 'tcpEstablished':
    case 'tcpTransitory':
      return `${value} s`;
    case 'ports': {
      const r = value as NatProfileValues['ports'];
      return `${r.low}-${r.high}`;
    }
    case 'portBlock': {
      const b = value as NonNullable<NatProfileValues['portBlock']>;
      return `{ size: ${b.size}, max-blocks: ${b.maxBlocks} }`;
    }
    default:
      return String(value);
  }
}

const citationText = (c: Citation) => `${c.title}${c.url ? ` <${c.url}>` : ''}`;

/** `labctl nat profiles [NAME]`: each profile, each value with where it comes from. */
export function formatProfilesText(profiles: NatProfile[] = Object.values(NAT_PROFILES)): string {
  return profiles
    .map((p) => {
      const cites: Citation[] = [];
      const number = (c: Citation) => (cites.includes(c) ? cites.indexOf(c) : cites.push(c) - 1) + 1;
      const width = Math.max(...PROFILE_FIELDS.map((f) => FIELD_KEYS[f].length));
      const valueWidth = Math.max(...PROFILE_FIELDS.map((f) => formatProfileValue(f, p.values[f]).length));
      const lines = PROFILE_FIELDS.map((f) => {
        const s = p.sources[f];
        const why = isCited(s) ? `[${number(s.cite)}] ${s.says}` : `chosen: ${s.chosen}`;
        return `  ${FIELD_KEYS[f].padEnd(width)}  ${formatProfileValue(f, p.values[f]).padEnd(valueWidth)}  ${why}`;
      });
      return [`${p.name}: ${p.description}`, ...lines, ...cites.map((c, i) => `  [${i + 1}] ${citationText(c)}`)].join('\n');
    })
    .join('\n\n')
    .concat('\n');
}

// --- the README's section ---

const DAGGER = ' †';

/** A table cell of some fields: their values joined, † when labctl chose any of them. */
function cell(p: NatProfile, fields: ProfileField[], text: (v: NatProfileValues) => string): string {
  return `${text(p.values)}${fields.some((f) => !isCited(p.sources[f])) ? DAGGER : ''}`;
}

/**
 * The README's "NAT profiles" table, its numbered sources, and for each profile where each
 * value comes from, as Markdown. A source several profiles cite is listed once.
 */
export function formatProfilesMarkdown(profiles: NatProfile[] = Object.values(NAT_PROFILES)): string {
  const cites: Citation[] = [];
  const number = (c: Citation) => (cites.includes(c) ? cites.indexOf(c) : cites.push(c) - 1) + 1;
  // Number the sources in the order the table's rows first cite them.
  for (const p of profiles) for (const f of PROFILE_FIELDS) if (isCited(p.sources[f])) number((p.sources[f] as { cite: Citation }).cite);
  const header = [
    'Profile',
    'NAT',
    'Mapping',
    'Filtering',
    'Hairpin',
    'Ports',
    'UDP unreplied / stream',
    'TCP established / transitory',
    'Outside addresses',
    'Port blocks',
    'Quota',
    'Sources',
  ];
  const rows = profiles.map((p) => [
    `\`${p.name}\``,
    p.description,
    cell(p, ['mapping'], (v) => `${SHORT[v.mapping]}M`),
    cell(p, ['filtering'], (v) => `${SHORT[v.filtering]}F`),
    cell(p, ['hairpinning'], (v) => (v.hairpinning ? 'yes' : 'no')),
    cell(p, ['portAllocation', 'ports'], (v) => `${v.portAllocation}, ${v.ports.low}-${v.ports.high}`),
    cell(p, ['udpUnreplied', 'udpStream'], (v) => `${v.udpUnreplied} / ${v.udpStream} s`),
    cell(p, ['tcpEstablished', 'tcpTransitory'], (v) => `${v.tcpEstablished} / ${v.tcpTransitory} s`),
    cell(p, ['outside', 'pooling'], (v) => (v.outside === 1 ? '1' : `${v.outside}, ${v.pooling}`)),
    cell(p, ['portBlock'], (v) => (v.portBlock ? `${v.portBlock.size} × ${v.portBlock.maxBlocks}` : '–')),
    cell(p, ['quota'], (v) => (v.quota === null ? '–' : String(v.quota))),
    [...new Set(PROFILE_FIELDS.flatMap((f) => (isCited(p.sources[f]) ? [number((p.sources[f] as { cite: Citation }).cite)] : [])))]
      .sort((x, y) => x - y)
      .join(', '),
  ]);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const origins = (p: NatProfile) =>
    PROFILE_FIELDS.map((f) => {
      const s = p.sources[f];
      const v = formatProfileValue(f, p.values[f]);
      return isCited(s) ? `${FIELD_KEYS[f]} ${v}: ${s.says} [${number(s.cite)}]` : `${FIELD_KEYS[f]} ${v}: † ${s.chosen}`;
    }).join('; ');
  return [
    line(header),
    line(header.map(() => '---')),
    ...rows.map(line),
    '',
    '† No source gives this value (or one of the values in the cell): the list below says which value labctl uses and why.',
    '',
    'Sources:',
    '',
    ...cites.map((c, i) => `${i + 1}. ${c.title}.${c.url ? ` <${c.url}>` : ''}`),
    '',
    'Where each value comes from:',
    '',
    ...profiles.map((p) => `- \`${p.name}\`: ${origins(p)}.`),
    '',
  ].join('\n');
}
