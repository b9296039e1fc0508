// STUN messages on the wire: RFC 5389 (header, attributes, XOR-MAPPED-ADDRESS,
// MESSAGE-INTEGRITY, FINGERPRINT, ERROR-CODE), RFC 5780 (CHANGE-REQUEST, RESPONSE-PORT,
// RESPONSE-ORIGIN, OTHER-ADDRESS, PADDING) and enough of RFC 3489 (no magic cookie,
// CHANGED-ADDRESS, SOURCE-ADDRESS) to answer old clients. Pure: bytes in, bytes out.
import { formatIpv6 } from '../util/ipv6.js';
import { createHmac } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

export const MAGIC_COOKIE = 0x2112a442;
const HEADER_LENGTH = 20;
/** XORed into the CRC-32 of FINGERPRINT ("STUN" in ASCII). */
const FINGERPRINT_XOR = 0x5354554e;

export const METHOD_BINDING = 0x001;

type MessageClass = 'request' | 'indication' | 'success' | 'error';
const CLASS_BITS: Record<MessageClass, number> = { request: 0b00, indication: 0b01, success: 0b10, error: 0b11 };

export const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  RESPONSE_ADDRESS: 0x0002, // RFC 3489, obsolete
  CHANGE_REQUEST: 0x0003, // RFC 5780 (and 3489)
  SOURCE_ADDRESS: 0x0004, // RFC 3489, obsolete
  CHANGED_ADDRESS: 0x0005, // RFC 3489, OTHER-ADDRESS's predecessor
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_MAPPED_ADDRESS: 0x0020,
  PRIORITY: 0x0024, // RFC 8445 (ICE)
  USE_CANDIDATE: 0x0025, // RFC 8445 (ICE)
  PADDING: 0x0026, // RFC 5780
  RESPONSE_PORT: 0x0027, // RFC 5780
  SOFTWARE: 0x8022,
  ALTERNATE_SERVER: 0x8023,
  FINGERPRINT: 0x8028,
  ICE_CONTROLLED: 0x8029,
  ICE_CONTROLLING: 0x802a,
  RESPONSE_ORIGIN: 0x802b, // RFC 5780
  OTHER_ADDRESS: 0x802c, // RFC 5780
} as const;

/** Attributes in 0x0000-0x7FFF are comprehension-required: an agent that does not know one must reject the message. */
export function comprehensionRequired(type: number): boolean {
  return type < 0x8000;
}

export interface Attribute {
  type: number;
  value: Buffer;
}

export interface StunMessage {
  method: number;
  cls: MessageClass;
  /** MAGIC_COOKIE for RFC 5389 messages; anything else is an RFC 3489 message (its cookie is part of the transaction ID). */
  cookie: number;
  /** 12 bytes. */
  transactionId: Buffer;
  attributes: Attribute[];
}

export class StunDecodeError extends Error {
  override name = 'StunDecodeError';
}

export interface TransportAddress {
  address: string;
  port: number;
}

// ---------------------------------------------------------------- header

export function messageType(method: number, cls: MessageClass): number {
  const c = CLASS_BITS[cls];
  // M11..M7 C1 M6..M4 C0 M3..M0 (RFC 5389 figure 3)
  return ((method & 0xf80) << 2) | ((method & 0x070) << 1) | (method & 0x00f) | ((c & 0b10) << 7) | ((c & 0b01) << 4);
}

export function parseMessageType(type: number): { method: number; cls: MessageClass } {
  const method = ((type & 0x3e00) >> 2) | ((type & 0x00e0) >> 1) | (type & 0x000f);
  const c = ((type & 0x0100) >> 7) | ((type & 0x0010) >> 4);
  const cls = (Object.keys(CLASS_BITS) as MessageClass[]).find((k) => CLASS_BITS[k] === c)!;
  return { method, cls };
}

/** Cheap test: could this datagram be a STUN message (RFC 5389 or 3489)? */
export function looksLikeStun(buf: Buffer): boolean {
  return buf.length >= HEADER_LENGTH && (buf[0]! & 0xc0) === 0 && buf.readUInt16BE(2) === buf.length - HEADER_LENGTH && buf.readUInt16BE(2) % 4 === 0;
}

export function isRfc5389(msg: StunMessage): boolean {
  return msg.cookie === MAGIC_COOKIE;
}

// ---------------------------------------------------------------- encode / decode

interface EncodeOptions {
  /** Adds MESSAGE-INTEGRITY (HMAC-SHA1) with this key: the password for short-term credentials, MD5(user:realm:pass) for long-term. */
  integrityKey?: Buffer;
  /** Adds FINGERPRINT as the last attribute. */
  fingerprint?: boolean;
  /** The byte attributes are padded with (RFC 5389 says any value; RFC 5769's vectors use 0x20). */
  padding?: number;
}

function attrBytes(type: number, value: Buffer, pad: number): Buffer {
  const padded = Math.ceil(value.length / 4) * 4;
  const out = Buffer.alloc(4 + padded, pad);
  out.writeUInt16BE(type, 0);
  out.writeUInt16BE(value.length, 2);
  value.copy(out, 4);
  return out;
}

export function encodeMessage(msg: StunMessage, options: EncodeOptions = {}): Buffer {
  if (msg.transactionId.length !== 12) throw new Error('a STUN transaction ID has 12 bytes');
  const pad = options.padding ?? 0;
  const body = msg.attributes.map((a) => attrBytes(a.type, a.value, pad));
  let out = Buffer.concat([Buffer.alloc(HEADER_LENGTH), ...body]);
  out.writeUInt16BE(messageType(msg.method, msg.cls), 0);
  out.writeUInt32BE(msg.cookie >>> 0, 4);
  msg.transactionId.copy(out, 8);
  if (options.integrityKey) {
    // The HMAC covers the message up to MESSAGE-INTEGRITY, with the length already counting it.
    out.writeUInt16BE(out.length - HEADER_LENGTH + 24, 2);
    const hmac = createHmac('sha1', options.integrityKey).update(out).digest();
    out = Buffer.concat([out, attrBytes(ATTR.MESSAGE_INTEGRITY, hmac, pad)]);
  }
  if (options.fingerprint) {
    out.writeUInt16BE(out.length - HEADER_LENGTH + 8, 2);
    const fp = Buffer.alloc(4);
    fp.writeUInt32BE((crc32(out) ^ FINGERPRINT_XOR) >>> 0);
    out = Buffer.concat([out, attrBytes(ATTR.FINGERPRINT, fp, pad)]);
  }
  out.writeUInt16BE(out.length - HEADER_LENGTH, 2);
  return out;
}

export function decodeMessage(buf: Buffer): StunMessage {
  if (buf.length < HEADER_LENGTH) throw new StunDecodeError(`too short for a STUN header (${buf.length} bytes)`);
  const type = buf.readUInt16BE(0);
  if (type & 0xc000) throw new StunDecodeError('the two most significant bits are not zero: not STUN');
  const length = buf.readUInt16BE(2);
  if (length % 4 !== 0) throw new StunDecodeError(`message length ${length} is not a multiple of 4`);
  if (length !== buf.length - HEADER_LENGTH)
    throw new StunDecodeError(`message length ${length} does not match the ${buf.length - HEADER_LENGTH} bytes after the header`);
  const { method, cls } = parseMessageType(type);
  const attributes: Attribute[] = [];
  let off = HEADER_LENGTH;
  while (off < buf.length) {
    if (off + 4 > buf.length) throw new StunDecodeError(`truncated attribute header at byte ${off}`);
    const t = buf.readUInt16BE(off);
    const len = buf.readUInt16BE(off + 2);
    if (off + 4 + len > buf.length) throw new StunDecodeError(`attribute 0x${t.toString(16).padStart(4, '0')} of length ${len} runs past the end`);
    attributes.push({ type: t, value: Buffer.from(buf.subarray(off + 4, off + 4 + len)) });
    off += 4 + Math.ceil(len / 4) * 4;
  }
  return { method, cls, cookie: buf.readUInt32BE(4), transactionId: Buffer.from(buf.subarray(8, 20)), attributes };
}

export function getAttribute(msg: StunMessage, type: number): Buffer | undefined {
  return msg.attributes.find((a) => a.type === type)?.value;
}

/** Offset of the first attribute of this type in an encoded message, or -1. */
function attributeOffset(buf: Buffer, type: number): number {
  let off = HEADER_LENGTH;
  while (off + 4 <= buf.length) {
    if (buf.readUInt16BE(off) === type) return off;
    off += 4 + Math.ceil(buf.readUInt16BE(off + 2) / 4) * 4;
  }
  return -1;
}

/** true/false when the message carries FINGERPRINT (last) and it matches / does not; undefined without one. */
export function checkFingerprint(buf: Buffer): boolean | undefined {
  const off = attributeOffset(buf, ATTR.FINGERPRINT);
  if (off < 0) return undefined;
  if (off + 8 !== buf.length || buf.readUInt16BE(off + 2) !== 4) return false;
  return (crc32(buf.subarray(0, off)) ^ FINGERPRINT_XOR) >>> 0 === buf.readUInt32BE(off + 4);
}

/** true/false when MESSAGE-INTEGRITY is present and the HMAC-SHA1 with this key matches / does not; undefined without one. */
export function checkIntegrity(buf: Buffer, key: Buffer): boolean | undefined {
  const off = attributeOffset(buf, ATTR.MESSAGE_INTEGRITY);
  if (off < 0) return undefined;
  if (buf.readUInt16BE(off + 2) !== 20 || off + 24 > buf.length) return false;
  const head = Buffer.from(buf.subarray(0, off));
  head.writeUInt16BE(off + 24 - HEADER_LENGTH, 2);
  const want = createHmac('sha1', key).update(head).digest();
  return want.equals(buf.subarray(off + 4, off + 24));
}

// ---------------------------------------------------------------- CRC-32 (ISO 3309, as FINGERPRINT uses it)

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------- attribute values

function ipBytes(address: string): { family: 1 | 2; bytes: Buffer } {
  if (isIPv4(address)) return { family: 1, bytes: Buffer.from(address.split('.').map(Number)) };
  if (isIPv6(address)) return { family: 2, bytes: ipv6Bytes(address) };
  throw new Error(`not an IP address: ${address}`);
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  let hs = groups(head);
  let ts = groups(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4) counts as two groups.
  const v4 = (arr: string[]) => {
    const last = arr[arr.length - 1];
    if (last && isIPv4(last)) {
      const b = last.split('.').map(Number);
      arr.splice(arr.length - 1, 1, ((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16));
    }
    return arr;
  };
  if (tail === undefined) hs = v4(hs);
  else ts = v4(ts);
  const fill = tail === undefined ? [] : new Array<string>(8 - hs.length - ts.length).fill('0');
  const all = [...hs, ...fill, ...ts];
  const out = Buffer.alloc(16);
  for (const [i, g] of all.entries()) out.writeUInt16BE(parseInt(g, 16), i * 2);
  return out;
}

function formatIp(family: number, bytes: Buffer): string {
  return family === 1 ? [...bytes].join('.') : formatIpv6(bytes);
}

/** MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, CHANGED-ADDRESS, SOURCE-ADDRESS. */
export function encodeAddress(a: TransportAddress): Buffer {
  const { family, bytes } = ipBytes(a.address);
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt8(family, 1);
  out.writeUInt16BE(a.port, 2);
  bytes.copy(out, 4);
  return out;
}

export function decodeAddress(value: Buffer): TransportAddress {
  if (value.length < 8) throw new StunDecodeError(`address attribute of ${value.length} bytes`);
  const family = value.readUInt8(1);
  const len = family === 1 ? 4 : family === 2 ? 16 : -1;
  if (len < 0) throw new StunDecodeError(`unknown address family ${family}`);
  if (value.length < 4 + len) throw new StunDecodeError(`address attribute of ${value.length} bytes for family ${family}`);
  return { address: formatIp(family, value.subarray(4, 4 + len)), port: value.readUInt16BE(2) };
}

function xorMask(transactionId: Buffer): Buffer {
  const m = Buffer.alloc(16);
  m.writeUInt32BE(MAGIC_COOKIE, 0);
  transactionId.copy(m, 4);
  return m;
}

export function encodeXorAddress(a: TransportAddress, transactionId: Buffer): Buffer {
  const out = encodeAddress(a);
  const mask = xorMask(transactionId);
  out.writeUInt16BE(a.port ^ (MAGIC_COOKIE >>> 16), 2);
  for (let i = 4; i < out.length; i++) out[i] = out[i]! ^ mask[i - 4]!;
  return out;
}

export function decodeXorAddress(value: Buffer, transactionId: Buffer): TransportAddress {
  const plain = Buffer.from(value);
  const mask = xorMask(transactionId);
  if (plain.length >= 4) plain.writeUInt16BE(plain.readUInt16BE(2) ^ (MAGIC_COOKIE >>> 16), 2);
  for (let i = 4; i < plain.length && i - 4 < 16; i++) plain[i] = plain[i]! ^ mask[i - 4]!;
  return decodeAddress(plain);
}

interface ChangeRequest {
  changeIp: boolean;
  changePort: boolean;
}

export function encodeChangeRequest(c: ChangeRequest): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE((c.changeIp ? 0x04 : 0) | (c.changePort ? 0x02 : 0));
  return out;
}

export function decodeChangeRequest(value: Buffer): ChangeRequest {
  if (value.length !== 4) throw new StunDecodeError(`CHANGE-REQUEST of ${value.length} bytes`);
  const v = value.readUInt32BE(0);
  return { changeIp: (v & 0x04) !== 0, changePort: (v & 0x02) !== 0 };
}

/** RESPONSE-PORT: a 16-bit port and two bytes of padding (coturn sends length 4 too). */
export function encodeResponsePort(port: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt16BE(port, 0);
  return out;
}

export function decodeResponsePort(value: Buffer): number {
  if (value.length < 2) throw new StunDecodeError(`RESPONSE-PORT of ${value.length} bytes`);
  return value.readUInt16BE(0);
}

interface ErrorCode {
  code: number;
  reason: string;
}

export const REASONS: Record<number, string> = {
  300: 'Try Alternate',
  400: 'Bad Request',
  401: 'Unauthorized',
  420: 'Unknown Attribute',
  438: 'Stale Nonce',
  500: 'Server Error',
};

export function encodeErrorCode(e: ErrorCode): Buffer {
  if (e.code < 300 || e.code > 699) throw new Error(`STUN error codes are 300-699, not ${e.code}`);
  const reason = Buffer.from(e.reason, 'utf8');
  const out = Buffer.alloc(4 + reason.length);
  out.writeUInt8(Math.floor(e.code / 100), 2);
  out.writeUInt8(e.code % 100, 3);
  reason.copy(out, 4);
  return out;
}

export function decodeErrorCode(value: Buffer): ErrorCode {
  if (value.length < 4) throw new StunDecodeError(`ERROR-CODE of ${value.length} bytes`);
  return { code: (value.readUInt8(2) & 0x07) * 100 + value.readUInt8(3), reason: value.subarray(4).toString('utf8') };
}

export function encodeUnknownAttributes(types: number[]): Buffer {
  const out = Buffer.alloc(types.length * 2);
  for (const [i, t] of types.entries()) out.writeUInt16BE(t, i * 2);
  return out;
}

export function decodeUnknownAttributes(value: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < value.length; i += 2) out.push(value.readUInt16BE(i));
  return out;
}

// ---------------------------------------------------------------- convenience

export function bindingRequest(transactionId: Buffer, attributes: Attribute[] = []): StunMessage {
  return { method: METHOD_BINDING, cls: 'request', cookie: MAGIC_COOKIE, transactionId, attributes };
}

/** What a Binding response says, attribute by attribute (undefined when absent). */
export interface BindingInfo {
  xorMapped?: TransportAddress;
  mapped?: TransportAddress;
  responseOrigin?: TransportAddress;
  /** OTHER-ADDRESS, or RFC 3489's CHANGED-ADDRESS when the server sent only that. */
  otherAddress?: TransportAddress;
  /** RFC 3489's SOURCE-ADDRESS. */
  sourceAddress?: TransportAddress;
  software?: string;
  error?: ErrorCode;
  unknownAttributes?: number[];
}

export function bindingInfo(msg: StunMessage): BindingInfo {
  const info: BindingInfo = {};
  for (const a of msg.attributes) {
    try {
      switch (a.type) {
        case ATTR.XOR_MAPPED_ADDRESS:
          info.xorMapped ??= decodeXorAddress(a.value, msg.transactionId);
          break;
        case ATTR.MAPPED_ADDRESS:
          info.mapped ??= decodeAddress(a.value);
          break;
        case ATTR.RESPONSE_ORIGIN:
          info.responseOrigin ??= decodeAddress(a.value);
          break;
        case ATTR.OTHER_ADDRESS:
          info.otherAddress = decodeAddress(a.value);
          break;
        case ATTR.CHANGED_ADDRESS:
          info.otherAddress ??= decodeAddress(a.value);
          break;
        case ATTR.SOURCE_ADDRESS:
          info.sourceAddress ??= decodeAddress(a.value);
          break;
        case ATTR.SOFTWARE:
          info.software ??= a.value.toString('utf8');
          break;
        case ATTR.ERROR_CODE:
          info.error ??= decodeErrorCode(a.value);
          break;
        case ATTR.UNKNOWN_ATTRIBUTES:
          info.unknownAttributes ??= decodeUnknownAttributes(a.value);
          break;
      }
    } catch {
      /* a malformed optional attribute: leave it out */
    }
  }
  return info;
}

/** The reflexive address a Binding response reports: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS. */
export function reflexiveAddress(info: BindingInfo): TransportAddress | undefined {
  return info.xorMapped ?? info.mapped;
}

export function formatEndpoint(a: TransportAddress | undefined): string {
  if (!a) return '-';
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
