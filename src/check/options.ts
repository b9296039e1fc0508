// Parsing `labctl check` option values. Pure.
import { CLASSIC, type Dependency, SHORT } from '../lab/behaviour.js';
import { parseIpv4 } from '../util/ipv4.js';
import type { TransportAddress } from '../stun/message.js';
import { BASE_PORT } from './session.js';

/** "EI" -> endpoint-independent: SHORT the other way round. */
const SHORT_TO_DEP = Object.fromEntries(Object.entries(SHORT).map(([dep, short]) => [short, dep as Dependency])) as Record<string, Dependency>;

/** "restricted-cone", or "EIM+ADF" (RFC 4787 short names). */
export function parseExpect(text: string): { mapping: Dependency; filtering: Dependency } {
  const t = text.trim();
  if (t in CLASSIC) return { ...CLASSIC[t as keyof typeof CLASSIC] };
  const m = /^(EI|AD|APD)M\+(EI|AD|APD)F$/i.exec(t);
  if (m) return { mapping: SHORT_TO_DEP[m[1]!.toUpperCase()]!, filtering: SHORT_TO_DEP[m[2]!.toUpperCase()]! };
  throw new Error(`--expect wants ${Object.keys(CLASSIC).join(', ')} or MAPPING+FILTERING such as EIM+ADF (got "${text}")`);
}

/** "ADDR" or "ADDR:PORT" (IPv4). */
export function parseServer(text: string): TransportAddress {
  const m = /^([0-9.]+)(?::(\d+))?$/.exec(text.trim());
  const port = m?.[2] === undefined ? BASE_PORT : Number(m[2]);
  if (!m || parseIpv4(m[1]!) === undefined || !(port >= 1 && port <= 65535)) throw new Error(`--server wants ADDRESS or ADDRESS:PORT (got "${text}")`);
  return { address: m[1]!, port };
}
