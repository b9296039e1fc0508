// A STUN client on Node dgram: Binding requests with RFC 5389 retransmission (RTO doubling
// after each transmission, Rc transmissions, then Rm x RTO of waiting), bounded by
// options so that a lab probe gives up in well under a second instead of 39.5 s.
//
// Transactions are matched by ID across every socket of the process: a response may
// arrive at another socket than the one that asked (RESPONSE-PORT), and the result says
// which socket got it.
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import {
  ATTR,
  type Attribute,
  type BindingInfo,
  bindingInfo,
  bindingRequest,
  checkFingerprint,
  decodeMessage,
  encodeChangeRequest,
  encodeMessage,
  encodeResponsePort,
  isRfc5389,
  looksLikeStun,
  type StunMessage,
  reflexiveAddress,
  type TransportAddress,
} from './message.js';

export interface RetransmitOptions {
  /** Initial retransmission timeout, ms (RFC 5389: at least 500 on the Internet). */
  rto: number;
  /** Rc: transmissions in all (RFC 5389: 7). */
  maxTransmits: number;
  /** Rm: after the last transmission, wait Rm x RTO for a response (RFC 5389: 16). */
  finalWaitFactor: number;
  /** Hard bound on the whole transaction, ms. */
  timeoutMs?: number;
}

/**
 * Inside one host, round trips take well under a millisecond, but a loaded host may starve
 * the processes involved: sends at 0, 100, 300, 700 and 1500 ms, gives up at 2.3 s. Tests
 * that expect no answer do not wait for this: they send a sentinel request alongside
 * (see src/stun/probes.ts).
 */
export const LAB_RETRANSMIT: RetransmitOptions = { rto: 100, maxTransmits: 5, finalWaitFactor: 8 };

/** Milliseconds after the first transmission at which each transmission happens, and when the transaction gives up. */
export function retransmitSchedule(o: RetransmitOptions): { sends: number[]; giveUp: number } {
  const sends: number[] = [];
  let t = 0;
  let rto = o.rto;
  for (let i = 0; i < o.maxTransmits; i++) {
    sends.push(t);
    if (i < o.maxTransmits - 1) {
      t += rto;
      rto *= 2;
    }
  }
  let giveUp = t + o.finalWaitFactor * o.rto;
  if (o.timeoutMs !== undefined) giveUp = Math.min(giveUp, o.timeoutMs);
  return { sends: sends.filter((s) => s < giveUp), giveUp };
}

export interface BindingOptions {
  changeIp?: boolean;
  changePort?: boolean;
  responsePort?: number;
  /** Bytes of PADDING (RFC 5780) to add. */
  padding?: number;
  /** Send an RFC 3489 request (no magic cookie, no FINGERPRINT). */
  legacy?: boolean;
  /** Add FINGERPRINT (default true for RFC 5389 requests). */
  fingerprint?: boolean;
  retransmit?: Partial<RetransmitOptions>;
  transactionId?: Buffer;
  /** Ends the transaction early (resolving undefined unless the response is already in). */
  signal?: AbortSignal;
}

export interface BindingResult {
  /** A success response (false: an error response, see info.error). */
  ok: boolean;
  info: BindingInfo;
  /** XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS. */
  reflexive?: TransportAddress;
  /** Where the response came from (compare with the address asked, for CHANGE-REQUEST). */
  from: TransportAddress;
  /** Local port of the socket the response arrived at. */
  receivedOn: number;
  transmissions: number;
  rttMs: number;
  message: StunMessage;
}

export interface Datagram {
  data: Buffer;
  from: TransportAddress;
  /** Local port it arrived at. */
  port: number;
  at: number;
}

interface Pending {
  resolve: (r: BindingResult) => void;
  transmissions: number;
  started: number;
}

const pending = new Map<string, Pending>();

export class StunSocket {
  /** Datagrams that were not responses to a transaction of this process (requests, other payloads). */
  readonly inbox: Datagram[] = [];
  /** Called with each datagram as it enters the inbox (to answer it at once, as an ICE agent answers a check). */
  onInbox?: (d: Datagram) => void;
  private waiters: (() => void)[] = [];
  private closed = false;

  private constructor(
    private readonly socket: dgram.Socket,
    readonly port: number,
    readonly address: string,
  ) {}

  static open(port = 0, address = '0.0.0.0'): Promise<StunSocket> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket({ type: address.includes(':') ? 'udp6' : 'udp4' });
      socket.once('error', reject);
      socket.bind(port, address, () => {
        socket.off('error', reject);
        const s = new StunSocket(socket, socket.address().port, address);
        socket.on('error', () => {
          /* ICMP errors reported on later sends: the transaction times out */
        });
        socket.on('message', (data, rinfo) => s.onMessage(data, { address: rinfo.address, port: rinfo.port }));
        resolve(s);
      });
    });
  }

  private onMessage(data: Buffer, from: TransportAddress): void {
    if (looksLikeStun(data)) {
      try {
        const msg = decodeMessage(data);
        if (msg.cls === 'success' || msg.cls === 'error') {
          const key = msg.transactionId.toString('hex');
          const p = pending.get(key);
          if (p && !(isRfc5389(msg) && checkFingerprint(data) === false)) {
            pending.delete(key);
            const info = bindingInfo(msg);
            const reflexive = reflexiveAddress(info);
            p.resolve({
              ok: msg.cls === 'success',
              info,
              ...(reflexive ? { reflexive } : {}),
              from,
              receivedOn: this.port,
              transmissions: p.transmissions,
              rttMs: Date.now() - p.started,
              message: msg,
            });
            return;
          }
        }
      } catch {
        /* not STUN: fall through to the inbox */
      }
    }
    const d: Datagram = { data, from, port: this.port, at: Date.now() };
    this.inbox.push(d);
    this.onInbox?.(d);
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits for a datagram in the inbox that satisfies pred, or undefined after timeoutMs. */
  async waitFor(pred: (d: Datagram) => boolean, timeoutMs: number): Promise<Datagram | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.inbox.find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(data: Buffer, to: TransportAddress): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      this.socket.send(data, to.port, to.address, () => resolve());
    });
  }

  /** One Binding transaction. Resolves undefined when no response came (after the retransmissions). */
  binding(to: TransportAddress, options: BindingOptions = {}): Promise<BindingResult | undefined> {
    const rt: RetransmitOptions = { ...LAB_RETRANSMIT, ...options.retransmit };
    const transactionId = options.transactionId ?? randomBytes(12);
    const attributes: Attribute[] = [];
    if (options.changeIp || options.changePort) {
      attributes.push({ type: ATTR.CHANGE_REQUEST, value: encodeChangeRequest({ changeIp: !!options.changeIp, changePort: !!options.changePort }) });
    }
    if (options.responsePort !== undefined) attributes.push({ type: ATTR.RESPONSE_PORT, value: encodeResponsePort(options.responsePort) });
    if (options.padding) attributes.push({ type: ATTR.PADDING, value: Buffer.alloc(options.padding) });
    const msg = bindingRequest(transactionId, attributes);
    if (options.legacy) msg.cookie = randomBytes(4).readUInt32BE(0) & 0x7fffffff;
    const wire = encodeMessage(msg, { fingerprint: !options.legacy && options.fingerprint !== false });
    const { sends, giveUp } = retransmitSchedule(rt);
    const key = transactionId.toString('hex');
    return new Promise((resolve) => {
      const timers: NodeJS.Timeout[] = [];
      let settled = false;
      const done = (r: BindingResult | undefined) => {
        if (settled) return;
        settled = true;
        timers.forEach(clearTimeout);
        pending.delete(key);
        options.signal?.removeEventListener('abort', onAbort);
        resolve(r);
      };
      // Giving up (or being aborted) waits for one more pass over pending I/O first: after
      // the process was starved of CPU, the timer may fire before a response that already
      // arrived has been read.
      const giveUpSoon = () => setImmediate(() => done(undefined));
      const onAbort = () => giveUpSoon();
      const p: Pending = { resolve: done, transmissions: 0, started: Date.now() };
      pending.set(key, p);
      if (options.signal?.aborted) return giveUpSoon();
      options.signal?.addEventListener('abort', onAbort);
      for (const at of sends) {
        timers.push(
          setTimeout(() => {
            p.transmissions++;
            void this.send(wire, to);
          }, at),
        );
      }
      timers.push(setTimeout(giveUpSoon, giveUp));
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w();
    try {
      this.socket.close();
    } catch {
      /* already closed */
    }
  }
}

/** A Binding request as raw bytes, for sending somewhere that is not a STUN server (hairpinning, hole punching). */
export function rawBindingRequest(transactionId = randomBytes(12)): { transactionId: Buffer; wire: Buffer } {
  return { transactionId, wire: encodeMessage(bindingRequest(transactionId), { fingerprint: true }) };
}

/** The transaction ID of a datagram that is a STUN request, or undefined. */
export function requestId(data: Buffer): string | undefined {
  if (!looksLikeStun(data)) return undefined;
  try {
    const m = decodeMessage(data);
    return m.cls === 'request' ? m.transactionId.toString('hex') : undefined;
  } catch {
    return undefined;
  }
}
