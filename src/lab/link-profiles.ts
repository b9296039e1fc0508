// Named impairment profiles for common access links (`links: [{ between: [...], profile: lte }]`
// in a lab file, `labctl link set A B --profile lte`). Each value carries its source: a
// standard, an operator's or a measurement study's published figures. Fields given beside a
// profile override it. The README's "Link profiles" section is generated from this data
// (formatProfilesMarkdown; a unit test keeps the two equal).
//
// The values are one way, per direction: netem and tbf act on the packets each side sends,
// so a source's round-trip time becomes a delay of half of it. They model a link; they do
// not promise what a given line does, and each profile's notes say how its values follow
// from its sources and which value no source gives.

/** A link's impairment in one direction, in canonical units. Absent fields: no impairment of that kind. */
export interface LinkImpairment {
  /** Added one-way delay, milliseconds. */
  delayMs?: number;
  /** Delay variation (netem's jitter), milliseconds; at most delayMs. */
  jitterMs?: number;
  /** Packets lost, percent (0-100). */
  lossPercent?: number;
  /** Rate limit, kilobits per second (1 kbit = 1000 bit, as tc counts). */
  rateKbit?: number;
  /** Packets with a bit flipped, percent. */
  corruptPercent?: number;
  /** Packets sent twice, percent. */
  duplicatePercent?: number;
  /** Packets sent out of order (needs a delay), percent. */
  reorderPercent?: number;
}

export interface ProfileSource {
  /** The fields this source gives (e.g. ['delayMs', 'jitterMs']), or 'all'. */
  fields: (keyof LinkImpairment)[] | 'all';
  /** Who published it and where: "FCC, Measuring Broadband America, Fixed, 2023, Table 3". */
  citation: string;
  url?: string;
}

export interface LinkProfile {
  name: string;
  /** One line: what link this is. */
  description: string;
  /** The impairment in each direction (a profile applies the same both ways unless `upstream`/`downstream` differ). */
  values: LinkImpairment;
  /** Where a direction differs (e.g. a DSL line's upstream rate). */
  upstream?: LinkImpairment;
  downstream?: LinkImpairment;
  sources: ProfileSource[];
  /** What the sources do not give and which value was chosen instead, and why. */
  notes?: string;
}

/** Every field of LinkImpairment, in the order tables show them. */
export const IMPAIRMENT_KEYS: readonly (keyof LinkImpairment)[] = [
  'delayMs',
  'jitterMs',
  'lossPercent',
  'rateKbit',
  'corruptPercent',
  'duplicatePercent',
  'reorderPercent',
];

// --- sources shared by several profiles ---

const MBA_LATENCY: ProfileSource = {
  fields: ['delayMs', 'jitterMs'],
  citation:
    '"Where Has the Time Gone? Examining Over a Decade of Broadband Latency Measurements" (TMA 2024, University of Colorado Boulder), on the FCC\'s ' +
    'Measuring Broadband America data; its published data: data_analysis/old_data/"Idle Latency over the years by technology.csv" ' +
    '(30-day medians of idle round-trip time, by technology) and data_analysis/latency/Idle Latency/cdfs/cdf_data/' +
    '"CDF of rtt_std Idle Latency.json" (percentiles of the standard deviation of round-trip time within a test, in microseconds)',
  url: 'https://github.com/UCBoulder/bclear',
};

const OOKLA_US_FIXED: ProfileSource = {
  fields: ['rateKbit'],
  citation:
    'Ookla, Speedtest Global Index, United States, "Fastest Providers" (Q3 2023): median download and upload speed of the top fixed broadband providers',
  url: 'https://www.speedtest.net/global-index/united-states',
};

const OFCOM_MOBILE_2023: ProfileSource = {
  fields: ['rateKbit'],
  citation:
    'Ofcom, "Mobile Matters" (July 2023; crowdsourced Opensignal data, October 2022 to March 2023): average download 129.9 Mbit/s ' +
    'on 5G, 29.5 Mbit/s on 4G, 5.9 Mbit/s on 3G; average upload 14.7, 7.6 and 2 Mbit/s; as reported by ISPreview',
  url: 'https://www.ispreview.co.uk/index.php/2023/07/ofcom-publish-benchmarks-of-uk-5g-4g-and-3g-mobile-networks.html',
};

const OFCOM_MOBILE_2024: ProfileSource = {
  fields: ['delayMs'],
  citation:
    'Ofcom, "Mobile Matters" (2024; crowdsourced data, October 2023 to March 2024): average response time (latency) of the UK operators ' +
    '16.3 to 21.4 ms on 5G and 18.3 to 23.7 ms on 4G',
  url: 'https://ofcom.org.uk/phones-and-broadband/mobile-phones/which-mobile-operator-has-the-longest-file-download-time/',
};

const STARLINK_FIRST_LOOK = 'Michel et al., "A First Look at Starlink Performance", ACM IMC 2022';

// --- the profiles ---

const PROFILES: LinkProfile[] = [
  {
    name: 'fiber',
    description: 'Fibre to the home (FTTH): a residential fibre line',
    values: { delayMs: 5, jitterMs: 1, rateKbit: 200_000 },
    sources: [MBA_LATENCY, OOKLA_US_FIXED],
    notes:
      'Delay: the 30-day median idle round-trip time of fibre lines was 8.7 to 10.0 ms in 2022 and 2023 (TMA 2024 study), so about 5 ms each way. ' +
      'Jitter: the median standard deviation of round-trip time within a test was 0.84 ms for fibre, rounded up to 1 ms. ' +
      'Rate: the providers with the fastest, near-symmetric uploads had medians of 234.20/188.60 Mbit/s (AT&T Internet) and 205.82/169.66 Mbit/s ' +
      '(Frontier) down/up in Q3 2023 (Ookla); 200 Mbit/s both ways is that, rounded, as fibre tiers are mostly symmetric. ' +
      'No loss: no source here gives a loss rate for the line itself.',
  },
  {
    name: 'cable',
    description: 'Cable (DOCSIS) broadband: fast downstream, slow upstream',
    values: { delayMs: 8, jitterMs: 2 },
    downstream: { rateKbit: 250_000 },
    upstream: { rateKbit: 20_000 },
    sources: [MBA_LATENCY, OOKLA_US_FIXED],
    notes:
      'Delay: the 30-day median idle round-trip time of cable lines was 15.7 to 17.3 ms in 2022 and 2023 (TMA 2024 study), so 8 ms each way. ' +
      'Jitter: the median standard deviation of round-trip time within a test was 2.07 ms for cable, so 2 ms. ' +
      'Rate: the three cable providers had median downloads of 236.07 to 260.09 Mbit/s and uploads of 14.82 to 30.60 Mbit/s in Q3 2023 ' +
      '(Ookla: Cox, Spectrum, XFINITY); 250 and 20 Mbit/s are those, rounded. ' +
      'No loss: no source here gives a loss rate for the line itself.',
  },
  {
    name: 'dsl',
    description: 'ADSL2+ on a short line: 24 Mbit/s down, 1.4 Mbit/s up',
    values: { delayMs: 13, jitterMs: 1 },
    downstream: { rateKbit: 24_000 },
    upstream: { rateKbit: 1_400 },
    sources: [
      MBA_LATENCY,
      {
        fields: ['rateKbit'],
        citation:
          'ITU-T Recommendation G.992.5 (ADSL2plus): up to 24 Mbit/s downstream; up to 1.4 Mbit/s upstream with Annex A ' +
          '(3.3 Mbit/s with Annex M); as given in Wikipedia, "G.992.5 Annex M"',
        url: 'https://en.wikipedia.org/wiki/G.992.5_Annex_M',
      },
    ],
    notes:
      'Delay: the 30-day median idle round-trip time of DSL lines was 25.9 to 27.1 ms in 2022 and 2023 (TMA 2024 study), so 13 ms each way. ' +
      'Jitter: the median standard deviation of round-trip time within a test was 0.79 ms for DSL, rounded up to 1 ms. ' +
      "Rate: ADSL2+'s highest sync rates (Annex A), which only lines close to the exchange reach; longer lines sync lower, and the IP " +
      'throughput is below the sync rate (ATM and PPP overhead). No loss: no source here gives a loss rate for the line itself.',
  },
  {
    name: '3g',
    description: 'A 3G (UMTS/HSPA) mobile data connection',
    values: { delayMs: 32, jitterMs: 10 },
    downstream: { rateKbit: 5_900 },
    upstream: { rateKbit: 2_000 },
    sources: [
      {
        fields: ['delayMs'],
        citation:
          'Ofcom, "Measuring mobile broadband performance in the UK: 4G and 3G network performance", second wave (tests in five UK cities, ' +
          'October to December 2014): average latency 63.5 ms on 3G and 53.1 ms on 4G; as reported by 4G5G World',
        url: 'http://4g5gworld.com/news/ofcom-147-mbps-average-lte-download-speed-uk',
      },
      OFCOM_MOBILE_2023,
    ],
    notes:
      'Delay: half the 63.5 ms average round trip Ofcom measured on 3G (31.75 ms). 3G networks are being switched off, ' +
      'and no newer figure is used. Rate: the 3G averages of Ofcom 2023 (5.9 down, 2 up). ' +
      'Jitter: no source here gives a figure; 10 ms was chosen because 3G delay varies widely: Fabini et al., "The Illusion of Being ' +
      'Deterministic - Application-Level Considerations on Delay in 3G HSPA Networks", found it non-deterministic and dependent on ' +
      'payload and load. No loss: no source here gives one.',
  },
  {
    name: 'lte',
    description: 'A 4G (LTE) mobile data connection',
    values: { delayMs: 11, jitterMs: 5 },
    downstream: { rateKbit: 30_000 },
    upstream: { rateKbit: 7_600 },
    sources: [OFCOM_MOBILE_2024, OFCOM_MOBILE_2023],
    notes:
      "Delay: the UK operators' average 4G response times were 18.3 to 23.7 ms (Ofcom 2024); half of their middle (21 ms) is about 11 ms each way. " +
      'Older measurements to farther servers show more: Ofcom measured 53.1 ms on 4G in 2014 (see the 3g profile). ' +
      'Rate: the 4G averages of Ofcom 2023 (29.5 down, rounded to 30; 7.6 up). ' +
      'Jitter: no source here gives one; 5 ms was chosen as a modest variation of a radio link. ' +
      'No loss: 3GPP TS 23.203, Table 6.1.7, gives the default bearer (QCI 9) a packet error loss rate of 10^-6 (0.0001%), too little to set.',
  },
  {
    name: '5g',
    description: 'A 5G (NR) mobile data connection',
    values: { delayMs: 9, jitterMs: 3 },
    downstream: { rateKbit: 130_000 },
    upstream: { rateKbit: 15_000 },
    sources: [OFCOM_MOBILE_2024, OFCOM_MOBILE_2023],
    notes:
      "Delay: the UK operators' average 5G response times were 16.3 to 21.4 ms (Ofcom 2024); half of their middle (19 ms) is about 9 ms each way. " +
      'The same report puts 4G only a little higher (the lte profile). ' +
      'Rate: the 5G averages of Ofcom 2023 (129.9 down, 14.7 up), rounded. ' +
      "Jitter: no source here gives one; 3 ms was chosen, below lte's. " +
      'No loss: 3GPP TS 23.501, Table 5.7.4-1, gives the default QoS flow (5QI 9) a packet error rate of 10^-6 (0.0001%), too little to set.',
  },
  {
    name: 'satellite-geo',
    description: 'Geostationary satellite internet (HughesNet, Viasat)',
    values: { delayMs: 300 },
    downstream: { rateKbit: 20_000 },
    upstream: { rateKbit: 3_000 },
    sources: [
      {
        fields: ['delayMs'],
        citation:
          'IETF RFC 2488 (BCP 28), "Enhancing TCP Over Satellite Channels using Standard Mechanisms", 1999, section 2: one ' +
          'ground-satellite-ground hop via a geostationary satellite takes 239.6 ms (station below the satellite) to 279.0 ms ' +
          '(edge of coverage), so a round trip takes at least 558 ms',
        url: 'https://www.rfc-editor.org/rfc/rfc2488',
      },
      {
        fields: ['delayMs'],
        citation: `${STARLINK_FIRST_LOOK}, section 1: geostationary SatCom access has "a minimum latency of about 600 ms"`,
      },
      {
        fields: ['rateKbit'],
        citation:
          'Ookla, Speedtest data for US satellite providers, Q2 2021: median download 19.73 Mbit/s (HughesNet) and 18.13 Mbit/s (Viasat), ' +
          'median upload 2.43 and 3.38 Mbit/s; as reported by Fierce Wireless',
        url: 'https://www.fiercewireless.com/wireless/starlink-speeds-improve-outpace-other-u-s-satellite-internet-options-ookla',
      },
    ],
    notes:
      'Delay: half the round trip of about 600 ms that Michel et al. give for geostationary access; the propagation alone (RFC 2488) ' +
      'is 240 to 279 ms each way; neither source breaks the rest down. Rate: the Ookla medians, rounded (20 down, 3 up). ' +
      'No jitter and no loss: no source here gives either.',
  },
  {
    name: 'satellite-leo',
    description: 'Low-earth-orbit satellite internet (Starlink)',
    values: { delayMs: 13, jitterMs: 5, lossPercent: 0.5 },
    downstream: { rateKbit: 100_000 },
    upstream: { rateKbit: 15_000 },
    sources: [
      {
        fields: ['delayMs'],
        citation:
          'Starlink, "Network update": a median peak-hour latency (round trip) of 25.7 ms across all US customers as of June 2025, ' +
          'less than 1% of measurements above 55 ms',
        url: 'https://www.starlink.com/updates/network-update',
      },
      {
        fields: ['jitterMs'],
        citation:
          `${STARLINK_FIRST_LOOK}, as summarised by one of its authors in "Fact checking Starlink's performance figures", APNIC Blog, ` +
          '28 November 2022: round-trip time to European RIPE Atlas anchors around 50 ms median, 40 ms at the 25th and 60 ms at the 75th percentile',
        url: 'https://blog.apnic.net/2022/11/28/fact-checking-starlinks-performance-figures',
      },
      {
        fields: ['rateKbit'],
        citation:
          'Ookla, Speedtest data for Starlink in the US, Q1 2025: median download 104.71 Mbit/s, median upload 14.84 Mbit/s; as reported by Telecompetitor',
        url: 'https://www.telecompetitor.com/starlink-shows-gains-in-speed-test-report/',
      },
    ],
    notes:
      "Delay: half of Starlink's 25.7 ms median round trip (dish to the internet and back). " +
      'Jitter: the quartiles Michel et al. measured lie 10 ms either side of the median round trip, which is 5 ms each way. ' +
      'Rate: the Ookla medians, rounded (100 down, 15 up). ' +
      'Loss: no source here gives an average rate. "A browser-side view of Starlink connectivity" (ACM IMC 2022) saw ' +
      'losses come in bursts, of up to 50% of packets, with the handovers between satellites; 0.5% independent loss was chosen as a ' +
      'stand-in that TCP notices.',
  },
  {
    name: 'wifi-lossy',
    description: 'A busy or weak Wi-Fi hop between a device and its access point',
    values: { delayMs: 10, jitterMs: 10, lossPercent: 2 },
    sources: [
      {
        fields: ['delayMs'],
        citation:
          '"WiFi can be the weakest link of round trip network latency in the wild" (measurements from 47 access points of a university ' +
          'campus over two months), abstract: more than 50% (10%) of TCP packets had a WiFi-hop latency above 20 ms (100 ms)',
        url: 'https://paperexplained.cn/articles/paper/detail/aadd9fa14b6597dd00f5d77157bad602709f7d33',
      },
    ],
    notes:
      'Delay: half the 20 ms that the Wi-Fi hop added to the round trip of more than half of the packets. ' +
      'Jitter: no source here gives a figure netem can use: the same study found 10% of packets above 100 ms, and Sui et al., ' +
      '"Characterizing and Improving WiFi Latency in Large-Scale Operational Networks" (ACM MobiSys 2016), a 99th percentile of about 250 ms, ' +
      "a long tail that netem's jitter (at most the delay either way) cannot reproduce; 10 ms, the most the delay allows, was chosen. " +
      "Loss: no source here gives a loss rate after 802.11's own retransmissions; 2% was chosen for a link lossy enough that TCP slows down. " +
      "No rate: a Wi-Fi link's rate depends on signal and contention; combine the profile with a rate of your own.",
  },
];

export const LINK_PROFILES: Record<string, LinkProfile> = Object.fromEntries(PROFILES.map((p) => [p.name, p]));

// --- what is sourced ---

/** The profile's impairment in one direction: its common values, then that direction's own. */
const inDirection = (p: LinkProfile, direction: 'upstream' | 'downstream'): LinkImpairment => ({ ...p.values, ...(p[direction] ?? {}) });

/** The fields a profile sets, in either direction. */
export function profileFields(p: LinkProfile): (keyof LinkImpairment)[] {
  return IMPAIRMENT_KEYS.filter((k) => [p.values, p.upstream, p.downstream].some((i) => i?.[k] !== undefined));
}

/** Whether one of the profile's sources gives that field (otherwise its notes must say why the value was chosen). */
export function isSourced(p: LinkProfile, field: keyof LinkImpairment): boolean {
  return p.sources.some((s) => s.fields === 'all' || s.fields.includes(field));
}

// --- the README's table ---

/** Up to 6 decimals, never an exponent. */
const plain = (n: number) => n.toFixed(6).replace(/\.?0+$/, '');

/** A value as a lab file writes it: 13ms, 0.5%, 1.4mbit. */
function formatValue(key: keyof LinkImpairment, v: number): string {
  if (key === 'delayMs' || key === 'jitterMs') return `${plain(v)}ms`;
  if (key === 'rateKbit') return v >= 1000 ? `${plain(v / 1000)}mbit` : `${plain(v)}kbit`;
  return `${plain(v)}%`;
}

/** One field of a profile in both directions: "5ms", or "250mbit down, 20mbit up"; † when no source gives it. */
function cell(p: LinkProfile, key: keyof LinkImpairment): string {
  const down = inDirection(p, 'downstream')[key];
  const up = inDirection(p, 'upstream')[key];
  if (down === undefined && up === undefined) return '–';
  const mark = isSourced(p, key) ? '' : ' †';
  const text = (v: number | undefined) => (v === undefined ? 'none' : formatValue(key, v));
  return down === up ? `${text(down)}${mark}` : `${text(down)} down, ${text(up)} up${mark}`;
}

const OTHER_KEYS = ['corruptPercent', 'duplicatePercent', 'reorderPercent'] as const;
const OTHER_NAMES: Record<(typeof OTHER_KEYS)[number], string> = { corruptPercent: 'corrupt', duplicatePercent: 'duplicate', reorderPercent: 'reorder' };

/**
 * The README's "Link profiles" table, its numbered sources and each profile's notes, as
 * Markdown. Sources shared by several profiles are listed once. The corrupt/duplicate/reorder
 * column appears only when a profile sets one of them.
 */
export function formatProfilesMarkdown(profiles: LinkProfile[] = Object.values(LINK_PROFILES)): string {
  const sources: ProfileSource[] = [];
  const sourceNumber = (s: ProfileSource) => {
    let i = sources.findIndex((t) => t.citation === s.citation && t.url === s.url);
    if (i < 0) i = sources.push(s) - 1;
    return i + 1;
  };
  const withOther = profiles.some((p) => OTHER_KEYS.some((k) => profileFields(p).includes(k)));
  const header = ['Profile', 'Link', 'Delay', 'Jitter', 'Loss', 'Rate', ...(withOther ? ['Other'] : []), 'Sources'];
  const rows = profiles.map((p) => {
    const other = OTHER_KEYS.filter((k) => profileFields(p).includes(k)).map((k) => `${OTHER_NAMES[k]} ${cell(p, k)}`);
    return [
      `\`${p.name}\``,
      p.description,
      cell(p, 'delayMs'),
      cell(p, 'jitterMs'),
      cell(p, 'lossPercent'),
      cell(p, 'rateKbit'),
      ...(withOther ? [other.length ? other.join('; ') : '–'] : []),
      [...new Set(p.sources.map(sourceNumber))].join(', '),
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [
    line(header),
    line(header.map(() => '---')),
    ...rows.map(line),
    '',
    "† No source gives this value: the profile's notes below say why it was chosen.",
    '',
    'Sources:',
    '',
    ...sources.map((s, i) => `${i + 1}. ${s.citation}${s.url ? `. <${s.url}>` : '.'}`),
    '',
    'How each value follows from its sources:',
    '',
    ...profiles.map((p) => `- \`${p.name}\`: ${p.notes ?? "every value is a source's figure."}`),
    '',
  ].join('\n');
}
