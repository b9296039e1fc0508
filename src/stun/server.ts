// A STUN server for NAT behaviour discovery (RFC 5389 Binding + RFC 5780) on Node dgram.
//
// It listens on two addresses x two ports (A1:P1, A1:P2, A2:P1, A2:P2) and answers a
// Binding request received on one of them:
//   - from the same address/port, or from the other address and/or port when the request
//     carries CHANGE-REQUEST (change IP -> the other address, change port -> the other port);
//   - to the request's source address and port, or to RESPONSE-PORT when the request has it;
//   - with XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (the request's source), RESPONSE-ORIGIN
//     (where the response leaves from), OTHER-ADDRESS (the other address with the other
//     port, relative to where the request arrived), SOFTWARE and FINGERPRINT.
// RFC 3489 requests (no magic cookie) get MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS.
//
// Several port pairs may be given: each is an independent RFC 5780 server on the same two
// addresses (A1:P1k, A1:P2k, A2:P1k, A2:P2k). labctl's own probes use one pair per
// concurrent probe so that no two probes share a remote endpoint (on a NAT that sends every
// flow from one outside port, two flows to one remote endpoint would collide).
import dgram from 'node:dgram';
import {
  ATTR,
  type Attribute,
  checkFingerprint,
  comprehensionRequired,
  decodeChangeRequest,
  decodeMessage,
  decodeResponsePort,
  encodeAddress,
  encodeErrorCode,
  encodeMessage,
  encodeUnknownAttributes,
  encodeXorAddress,
  getAttribute,
  isRfc5389,
  looksLikeStun,
  METHOD_BINDING,
  REASONS,
  type StunMessage,
  type TransportAddress,
} from './message.js';

/** Comprehension-required attributes this server understands (and may ignore). */
const KNOWN = new Set<number>([
  ATTR.MAPPED_ADDRESS,
  ATTR.RESPONSE_ADDRESS,
  ATTR.CHANGE_REQUEST,
  ATTR.SOURCE_ADDRESS,
  ATTR.CHANGED_ADDRESS,
  ATTR.USERNAME,
  ATTR.MESSAGE_INTEGRITY,
  ATTR.ERROR_CODE,
  ATTR.UNKNOWN_ATTRIBUTES,
  ATTR.REALM,
  ATTR.NONCE,
  ATTR.XOR_MAPPED_ADDRESS,
  ATTR.PRIORITY,
  ATTR.USE_CANDIDATE,
  ATTR.PADDING,
  ATTR.RESPONSE_PORT,
]);

export const SOFTWARE = 'labctl STUN server (RFC 5389, RFC 5780)';

export interface StunServerOptions {
  /** One or two addresses; with one, CHANGE-REQUEST for the address is refused (420) and OTHER-ADDRESS is left out. */
  addresses: string[];
  /** Port pairs: [P1, P2] for each independent server. */
  portPairs: [number, number][];
  software?: string;
  /** Called for each request answered or dropped (for logs and tests). */
  onEvent?: (e: ServerEvent) => void;
}

interface ServerEvent {
  kind: 'answered' | 'error-response' | 'dropped';
  from: TransportAddress;
  to: TransportAddress;
  via?: TransportAddress;
  reason?: string;
}

interface Listener {
  socket: dgram.Socket;
  address: string;
  port: number;
  addrIndex: number;
  pair: number;
  portIndex: number;
}

export class StunServer {
  private readonly listeners: Listener[] = [];
  requests = 0;

  private constructor(private readonly options: StunServerOptions) {}

  static async start(options: StunServerOptions): Promise<StunServer> {
    if (options.addresses.length < 1 || options.addresses.length > 2) throw new Error('a STUN server listens on one or two addresses');
    if (options.portPairs.length < 1) throw new Error('a STUN server needs at least one port pair');
    const server = new StunServer(options);
    try {
      await Promise.all(
        options.addresses.flatMap((address, addrIndex) =>
          options.portPairs.flatMap((pair, p) => pair.map((port, portIndex) => server.listen(address, port, addrIndex, p, portIndex))),
        ),
      );
    } catch (e) {
      server.close();
      throw e;
    }
    return server;
  }

  private listen(address: string, port: number, addrIndex: number, pair: number, portIndex: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket({ type: address.includes(':') ? 'udp6' : 'udp4' });
      const l: Listener = { socket, address, port, addrIndex, pair, portIndex };
      socket.once('error', reject);
      socket.on('message', (msg, rinfo) => this.onMessage(l, msg, { address: rinfo.address, port: rinfo.port }));
      socket.bind(port, address, () => {
        socket.off('error', reject);
        socket.on('error', () => {
          /* e.g. ICMP errors reported on send; the server keeps serving */
        });
        this.listeners.push(l);
        resolve();
      });
    });
  }

  /** Where each listener is: "A1:P1" ... */
  get endpoints(): TransportAddress[] {
    return this.listeners.map((l) => ({ address: l.address, port: l.port }));
  }

  close(): void {
    for (const l of this.listeners.splice(0)) {
      try {
        l.socket.close();
      } catch {
        /* already closed */
      }
    }
  }

  private find(addrIndex: number, pair: number, portIndex: number): Listener | undefined {
    return this.listeners.find((l) => l.addrIndex === addrIndex && l.pair === pair && l.portIndex === portIndex);
  }

  private onMessage(l: Listener, buf: Buffer, from: TransportAddress): void {
    if (!looksLikeStun(buf)) return;
    let msg: StunMessage;
    try {
      msg = decodeMessage(buf);
    } catch {
      return; // not STUN after all: RFC 5389 says discard
    }
    if (msg.cls !== 'request') return; // responses and indications need no answer
    const here = { address: l.address, port: l.port };
    const drop = (reason: string) => this.options.onEvent?.({ kind: 'dropped', from, to: here, reason });
    if (isRfc5389(msg) && checkFingerprint(buf) === false) return void drop('bad FINGERPRINT');
    this.requests++;
    const error = (code: number, extra: Attribute[] = []) => {
      const reply: StunMessage = {
        method: msg.method,
        cls: 'error',
        cookie: msg.cookie,
        transactionId: msg.transactionId,
        attributes: [{ type: ATTR.ERROR_CODE, value: encodeErrorCode({ code, reason: REASONS[code] ?? 'Error' }) }, ...extra, this.software()],
      };
      this.send(l, encodeMessage(reply, { fingerprint: isRfc5389(msg) }), from);
      this.options.onEvent?.({ kind: 'error-response', from, to: here, reason: `${code}` });
    };
    if (msg.method !== METHOD_BINDING) return void error(400);
    const unknown = msg.attributes.filter((a) => comprehensionRequired(a.type) && !KNOWN.has(a.type)).map((a) => a.type);
    if (unknown.length) return void error(420, [{ type: ATTR.UNKNOWN_ATTRIBUTES, value: encodeUnknownAttributes(unknown) }]);

    let changeIp = false;
    let changePort = false;
    let responsePort: number | undefined;
    try {
      const cr = getAttribute(msg, ATTR.CHANGE_REQUEST);
      if (cr) ({ changeIp, changePort } = decodeChangeRequest(cr));
      const rp = getAttribute(msg, ATTR.RESPONSE_PORT);
      if (rp) responsePort = decodeResponsePort(rp);
    } catch {
      return void error(400);
    }
    const twoAddresses = this.options.addresses.length === 2;
    if (changeIp && !twoAddresses) return void error(420, [{ type: ATTR.UNKNOWN_ATTRIBUTES, value: encodeUnknownAttributes([ATTR.CHANGE_REQUEST]) }]);
    const via = this.find(changeIp ? 1 - l.addrIndex : l.addrIndex, l.pair, changePort ? 1 - l.portIndex : l.portIndex);
    if (!via) return void error(500);
    const other = twoAddresses ? this.find(1 - l.addrIndex, l.pair, 1 - l.portIndex) : undefined;
    const origin = { address: via.address, port: via.port };
    const to = responsePort !== undefined ? { address: from.address, port: responsePort } : from;
    const attributes: Attribute[] = [];
    if (isRfc5389(msg)) {
      attributes.push({ type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress(from, msg.transactionId) });
      attributes.push({ type: ATTR.MAPPED_ADDRESS, value: encodeAddress(from) });
      attributes.push({ type: ATTR.RESPONSE_ORIGIN, value: encodeAddress(origin) });
      if (other) attributes.push({ type: ATTR.OTHER_ADDRESS, value: encodeAddress({ address: other.address, port: other.port }) });
      attributes.push(this.software());
    } else {
      // RFC 3489: the names of the time.
      attributes.push({ type: ATTR.MAPPED_ADDRESS, value: encodeAddress(from) });
      attributes.push({ type: ATTR.SOURCE_ADDRESS, value: encodeAddress(origin) });
      if (other) attributes.push({ type: ATTR.CHANGED_ADDRESS, value: encodeAddress({ address: other.address, port: other.port }) });
    }
    const reply: StunMessage = { method: METHOD_BINDING, cls: 'success', cookie: msg.cookie, transactionId: msg.transactionId, attributes };
    this.send(via, encodeMessage(reply, { fingerprint: isRfc5389(msg) }), to);
    this.options.onEvent?.({ kind: 'answered', from, to, via: origin });
  }

  private software(): Attribute {
    return { type: ATTR.SOFTWARE, value: Buffer.from(this.options.software ?? SOFTWARE, 'utf8') };
  }

  private send(l: Listener, buf: Buffer, to: TransportAddress): void {
    l.socket.send(buf, to.port, to.address, () => {
      /* errors (unreachable) are the client's problem */
    });
  }
}
