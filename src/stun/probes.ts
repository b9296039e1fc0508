// The client side of labctl's NAT tests, run inside a node's namespace by the agent
// (src/stun/agent.ts). Each probe takes and returns plain JSON. The host decides what to
// run when (src/check); these only talk STUN and report what happened, never a verdict.
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { type BindingOptions, type BindingResult, type Datagram, rawBindingRequest, requestId, type RetransmitOptions, StunSocket } from './client.js';
import type { TransportAddress } from './message.js';
import { rttProbe } from './rtt.js';

/** The server's two addresses and one of its port pairs: an RFC 5780 server. */
export interface ServerInstance {
  a1: string;
  a2: string;
  p1: number;
  p2: number;
}

export interface Observation {
  /** Where the request went. */
  to: TransportAddress;
  /** The reflexive (mapped) address the server saw, or undefined when nothing came back. */
  mapped?: TransportAddress;
  /** Where the response came from. */
  from?: TransportAddress;
  otherAddress?: TransportAddress;
  responseOrigin?: TransportAddress;
  /** Local port it arrived at (RESPONSE-PORT tests). */
  receivedOn?: number;
  transmissions?: number;
  error?: string;
}

function observe(to: TransportAddress, r: BindingResult | undefined): Observation {
  if (!r) return { to };
  return {
    to,
    ...(r.reflexive ? { mapped: r.reflexive } : {}),
    from: r.from,
    ...(r.info.otherAddress ? { otherAddress: r.info.otherAddress } : {}),
    ...(r.info.responseOrigin ? { responseOrigin: r.info.responseOrigin } : {}),
    receivedOn: r.receivedOn,
    transmissions: r.transmissions,
    ...(r.ok ? {} : { error: `${r.info.error?.code ?? '?'} ${r.info.error?.reason ?? ''}`.trim() }),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Every socket a probe opened in this process, so that a datagram that arrives at an unexpected one is still found. */
const sockets = new Set<StunSocket>();

/** Sockets held open on a fixed inside port for the whole session (`hold`), shared by every probe that asks for that port. */
const held = new Map<number, StunSocket>();

async function open(port = 0): Promise<StunSocket> {
  const h = port ? held.get(port) : undefined;
  if (h) return h;
  const s = await StunSocket.open(port);
  sockets.add(s);
  return s;
}

function close(...ss: StunSocket[]): void {
  for (const s of ss) {
    if (held.get(s.port) === s) continue;
    s.close();
    sockets.delete(s);
  }
}

/**
 * Keeps a socket on this inside port until `release`: probes that ask for the port share it
 * (their transactions are told apart by ID). A NAT that sends every flow from one outside
 * port and forwards that port to one inside port needs all its probes on that inside port.
 */
async function holdPort(args: { port: number }): Promise<{ port: number }> {
  if (args.port && held.has(args.port)) return { port: args.port };
  // Port 0: a free port of the kernel's choosing, held under its number.
  const s = await StunSocket.open(args.port);
  sockets.add(s);
  held.set(s.port, s);
  return { port: s.port };
}

function releasePort(args: { port: number }): { released: boolean } {
  const s = held.get(args.port);
  held.delete(args.port);
  if (s) close(s);
  return { released: !!s };
}

/** Resolves after one more pass of the event loop over pending I/O (what a starved process has not read yet). */
function drainIo(): Promise<void> {
  return new Promise((r) => setTimeout(() => setImmediate(r), 0));
}

/** Finds a STUN request with this transaction ID in any open socket's inbox, waiting up to timeoutMs. */
async function findRequest(id: string, timeoutMs: number): Promise<Datagram | undefined> {
  const deadline = Date.now() + timeoutMs;
  const look = () => {
    for (const s of sockets) {
      const hit = s.inbox.find((d) => requestId(d.data) === id);
      if (hit) return hit;
    }
    return undefined;
  };
  for (;;) {
    const hit = look();
    if (hit) return hit;
    const left = deadline - Date.now();
    if (left <= 0) {
      await drainIo();
      return look();
    }
    await sleep(Math.min(left, 10));
  }
}

/** How long to wait, after a sentinel's answer, for answers sent just before it. */
const SENTINEL_GRACE_MS = 150;
/** The same for a server in the lab itself (the lifetime probes: one check ends the run). */
const LAB_SENTINEL_GRACE_MS = 50;

/**
 * Runs requests that may legitimately get no answer (a filtering test, a lifetime check)
 * together with a sentinel that must be answered, sent right after them to the same server
 * socket. The server answers in order, so once the sentinel's answer is in (plus a grace
 * period), any answer that was let through has arrived too: "no answer" then means
 * filtered, not "not yet" on a loaded host. Without the sentinel's answer, nothing can be
 * concluded (the results say so).
 */
async function withSentinel(
  socket: StunSocket,
  to: TransportAddress,
  requests: BindingOptions[],
  sentinelVia: StunSocket = socket,
  graceMs = SENTINEL_GRACE_MS,
  // Over a lossy link: retransmission timed to the path, and no giving up before holdMs (the requests' tries, see src/check/impaired.ts).
  timing: { retransmit?: Partial<RetransmitOptions>; holdMs?: number } = {},
): Promise<{ sentinel: BindingResult | undefined; answers: (BindingResult | undefined)[] }> {
  const ctrl = new AbortController();
  const started = Date.now();
  const patient: Partial<RetransmitOptions> = timing.retransmit ?? { rto: 100, maxTransmits: 5, finalWaitFactor: 8 };
  const pendingAnswers = requests.map((o) => socket.binding(to, { retransmit: patient, ...o, signal: ctrl.signal }));
  const sentinel = await sentinelVia.binding(to, { retransmit: patient });
  if (sentinel) await sleep(Math.max(graceMs, started + (timing.holdMs ?? 0) - Date.now()));
  ctrl.abort();
  const answers = await Promise.all(pendingAnswers);
  return { sentinel, answers };
}

interface ProbeOptions {
  /** Local port for the probe's socket (0: any). */
  localPort?: number;
  retransmit?: Partial<RetransmitOptions>;
}

// ------------------------------------------------------------------ mapping

export interface MappingResult {
  local: number;
  /** A1:P1, A1:P2, A2:P1, A2:P2, in that order. */
  observations: Observation[];
}

/** RFC 5780 4.3, over the server's whole address x port matrix: one inside port to all four server endpoints. */
async function mappingProbe(args: { server: ServerInstance } & ProbeOptions): Promise<MappingResult> {
  const s = await open(args.localPort);
  try {
    const { a1, a2, p1, p2 } = args.server;
    const dests = [
      { address: a1, port: p1 },
      { address: a1, port: p2 },
      { address: a2, port: p1 },
      { address: a2, port: p2 },
    ];
    // The first request creates the mapping; the others go out together after it.
    const first = await s.binding(dests[0]!, { ...(args.retransmit ? { retransmit: args.retransmit } : {}) });
    const rest = await Promise.all(dests.slice(1).map((d) => s.binding(d, { ...(args.retransmit ? { retransmit: args.retransmit } : {}) })));
    return { local: s.port, observations: [observe(dests[0]!, first), ...rest.map((r, i) => observe(dests[i + 1]!, r))] };
  } finally {
    close(s);
  }
}

// ------------------------------------------------------------------ filtering

export interface FilteringResult {
  local: number;
  /** Test I: no change. Then the responses asked to come from elsewhere. */
  same: Observation;
  changePort: Observation;
  changeAddress: Observation;
  changeBoth: Observation;
}

/**
 * RFC 5780 4.4: from one inside port, a Binding to A1:P1 (test I) and requests asking the
 * server to answer from A1:P2 (port changed), A2:P1 (address changed) and A2:P2 (both).
 * Everything goes to A1 only, so the NAT learns no other server address.
 */
async function filteringProbe(args: { server: ServerInstance; graceMs?: number; holdMs?: number } & ProbeOptions): Promise<FilteringResult> {
  const s = await open(args.localPort);
  try {
    const to = { address: args.server.a1, port: args.server.p1 };
    // The requests for changed answers go first; the plain request after them is test I and the sentinel.
    const changed = [{ changePort: true }, { changeIp: true }, { changeIp: true, changePort: true }];
    const timing = { ...(args.retransmit ? { retransmit: args.retransmit } : {}), ...(args.holdMs ? { holdMs: args.holdMs } : {}) };
    const { sentinel, answers } = await withSentinel(s, to, changed, s, args.graceMs ?? SENTINEL_GRACE_MS, timing);
    const [changePort, changeAddress, changeBoth] = answers;
    const unknown = !sentinel;
    return {
      local: s.port,
      same: observe(to, sentinel),
      changePort: observe(to, unknown ? undefined : changePort),
      changeAddress: observe(to, unknown ? undefined : changeAddress),
      changeBoth: observe(to, unknown ? undefined : changeBoth),
    };
  } finally {
    close(s);
  }
}

// ------------------------------------------------------------------ hairpinning

export interface HairpinResult {
  a: { local: number; mapped?: TransportAddress };
  /** unasked: B did not ask the server for its mapping (see hairpinProbe's learnB). */
  b: { local: number; mapped?: TransportAddress; unasked?: true };
  /** B's request to A's mapped address came back into the LAN. */
  delivered: boolean;
  /** Local port it arrived at (A's, or another probe socket's). */
  receivedOn?: number;
  /** The source address and port the hairpinned packet showed. */
  shownSource?: TransportAddress;
}

/**
 * RFC 5780 4.5: socket A learns its mapping (Binding to A1:P1), socket B learns its own
 * (Binding to A1:P2, another remote endpoint so that a NAT with one outside port for every
 * flow does not collide them), then B sends a Binding request to A's mapped address.
 */
async function hairpinProbe(args: {
  server: ServerInstance;
  localPortA?: number;
  localPortB?: number;
  /**
   * false: B does not learn its own mapping first. On a NAT that sends every flow from one
   * outside port, B's flow to the server would take a server endpoint that A's flows (or the
   * answers let in to A) use, which the NAT cannot tell apart without a flush.
   */
  learnB?: boolean;
  retransmit?: Partial<RetransmitOptions>;
}): Promise<HairpinResult> {
  const a = await open(args.localPortA);
  const b = await open(args.localPortB);
  try {
    const rt = args.retransmit ? { retransmit: args.retransmit } : {};
    const learnB = args.learnB !== false;
    const [ra, rb] = await Promise.all([
      a.binding({ address: args.server.a1, port: args.server.p1 }, rt),
      learnB ? b.binding({ address: args.server.a1, port: args.server.p2 }, rt) : undefined,
    ]);
    const result: HairpinResult = {
      a: { local: a.port, ...(ra?.reflexive ? { mapped: ra.reflexive } : {}) },
      b: { local: b.port, ...(rb?.reflexive ? { mapped: rb.reflexive } : {}), ...(learnB ? {} : { unasked: true as const }) },
      delivered: false,
    };
    if (!ra?.reflexive) return result;
    const { transactionId, wire } = rawBindingRequest();
    const id = transactionId.toString('hex');
    const target = ra.reflexive;
    // The hairpin path is the kernel's alone (no process on it answers), so the packet is
    // back within a millisecond or not at all: three sends over 100 ms, a 300 ms wait, then a
    // last look at what the socket has received.
    void b.send(wire, target);
    const sends = [50, 100].map((t) => setTimeout(() => void b.send(wire, target), t));
    const hit = await findRequest(id, 300);
    sends.forEach(clearTimeout);
    if (hit) {
      result.delivered = true;
      result.receivedOn = hit.port;
      result.shownSource = hit.from;
    }
    return result;
  } finally {
    close(a, b);
  }
}

// ------------------------------------------------------------------ mapping lifetime

interface LifetimeArgs {
  /** One server instance per probe (so no two probes share a remote endpoint). */
  servers: ServerInstance[];
  /** Idle time before each probe's check, seconds; one entry per server instance. Probes with equal idle times form a group. */
  idle: number[];
  /** 'unreplied': one request and its response, then silence. 'stream': traffic both ways for longer than warmupMs first. */
  kind: 'unreplied' | 'stream';
  /** Stream flows: a second exchange this long after the first request (the kernel makes a flow ASSURED after 2 s). */
  warmupMs?: number;
  /** Skip the checks after the first group in which a mapping was gone. */
  stopAtDead?: boolean;
  /** The path's round trip, ms: a check's answer reaches the NAT this long after the check leaves, counted from the mapping's answer. */
  rttMs?: number;
  retransmit?: Partial<RetransmitOptions>;
}

export interface LifetimeProbeResult {
  idle: number;
  local: number;
  mapped?: TransportAddress;
  /** Actual idle time when the check left, seconds. */
  checkedAt?: number;
  alive?: boolean;
  /** The check packet arrived at another inside port (the mapping now points elsewhere). */
  strayTo?: number;
  skipped?: boolean;
  error?: string;
}

export interface LifetimeResult {
  kind: 'unreplied' | 'stream';
  probes: LifetimeProbeResult[];
}

function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

/**
 * RFC 5780 4.6, in parallel: probe i creates a mapping from its own fresh inside port X_i
 * (Binding to A1:P1 of its own server port pair), stays silent for idle[i] seconds, then a
 * separate socket Y asks the server (at A1:P2 of that pair, CHANGE-REQUEST port,
 * RESPONSE-PORT = X_i's mapped port) to answer from A1:P1 to X_i's mapping. The answer
 * reaches X_i only while the NAT still holds X_i's mapping; a plain request from Y right
 * after it is the sentinel. Checking a probe refreshes only its own mapping.
 */
async function lifetimeProbe(args: LifetimeArgs): Promise<LifetimeResult> {
  const xs = await Promise.all(args.idle.map(() => open()));
  const y = await open();
  const results: LifetimeProbeResult[] = args.idle.map((idle, i) => ({ idle, local: xs[i]!.port }));
  const idleStart: number[] = args.idle.map(() => 0);
  const patient: Partial<RetransmitOptions> = args.retransmit ?? { rto: 100, maxTransmits: 5, finalWaitFactor: 8 };
  const rtt = args.rttMs ?? 0;
  try {
    // Create every mapping (and, for stream, keep each flow busy both ways past warmupMs).
    await Promise.all(
      xs.map(async (x, i) => {
        const inst = args.servers[i]!;
        const to = { address: inst.a1, port: inst.p1 };
        const first = await x.binding(to, { retransmit: patient });
        if (!first?.reflexive) {
          results[i]!.error = 'no answer to the request that creates the mapping';
          return;
        }
        results[i]!.mapped = first.reflexive;
        idleStart[i] = Date.now();
        if (args.kind === 'stream') {
          // The kernel gives a flow that has seen a reply the stream timeout (and calls it
          // ASSURED) at its first packet more than 2 s after its first: one more exchange then.
          // Counted from the answer, which the NAT passed after it saw the first packet; the
          // 25 ms past 2 s cover conntrack's clock (a jiffy: at most 10 ms) and timer slack.
          const warmup = args.warmupMs ?? 2025;
          await sleep(idleStart[i]! + warmup - Date.now());
          const r = await x.binding(to, { retransmit: patient });
          if (!r) {
            delete results[i]!.mapped;
            results[i]!.error = 'no answer during the warm-up exchange';
            return;
          }
          idleStart[i] = Date.now();
        }
      }),
    );
    const stop = new AbortController();
    const groups = [...new Set(args.idle)].sort((p, q) => p - q);
    const groupDone = new Map<number, Promise<void>>();
    for (const [gi, idle] of groups.entries()) {
      const members = results.map((r, i) => (r.idle === idle ? i : -1)).filter((i) => i >= 0);
      const prev = gi > 0 ? groupDone.get(groups[gi - 1]!) : undefined;
      groupDone.set(
        idle,
        (async () => {
          await Promise.all(
            members.map(async (i) => {
              const r = results[i]!;
              if (!r.mapped) return;
              await sleepUnless(idleStart[i]! + idle * 1000 - rtt - Date.now(), stop.signal);
              if (stop.signal.aborted) {
                r.skipped = true;
                return;
              }
              const inst = args.servers[i]!;
              // The NAT's idle time: the check's answer reaches it one round trip after the client's clock says (src/check/impaired.ts natIdleSeconds).
              r.checkedAt = (Date.now() - idleStart[i]! + rtt) / 1000;
              // labctl's own server, inside the lab (--lifetime needs one port pair per probe):
              // an answer sent before the sentinel's arrives within milliseconds.
              const { sentinel, answers } = await withSentinel(
                y,
                { address: inst.a1, port: inst.p2 },
                [{ changePort: true, responsePort: r.mapped.port }],
                y,
                LAB_SENTINEL_GRACE_MS,
              );
              const res = answers[0];
              if (!sentinel) {
                r.error = 'no answer from the server to the sentinel';
                return;
              }
              r.alive = res?.receivedOn === xs[i]!.port;
              if (res && !r.alive) r.strayTo = res.receivedOn;
            }),
          );
          // A group ends the run once it (and every group before it) is done and it saw a mapping gone.
          if (prev !== undefined) await prev;
          if (args.stopAtDead && members.some((i) => results[i]!.alive === false)) stop.abort();
        })(),
      );
    }
    await Promise.all(groupDone.values());
    return { kind: args.kind, probes: results };
  } finally {
    close(...xs, y);
  }
}

// ------------------------------------------------------------------ hole punching (ICE-style checks)

/** One socket per node for every peer, as a WireGuard or ICE agent would use it. */
const punchSockets = new Map<string, StunSocket>();

export interface PunchLearnResult {
  local: number;
  mapped?: TransportAddress;
  /** The node's own IPv4 addresses: its host candidates (RFC 8445 5.1.1.1). */
  hosts: string[];
}

/**
 * This namespace's IPv4 addresses, loopback left out, and labctl's STUN server interface
 * (lcstun0, see src/check/stun-site.ts), which is the server's and no node's.
 */
/** This namespace's IPv4 addresses (not the STUN server's veth); loopback ones only when asked (they are no ICE host candidates). */
function hostAddresses(loopback = false): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (name.startsWith('lcstun')) continue;
    for (const a of addrs ?? []) if (a.family === 'IPv4' && (loopback || !a.internal)) out.push(a.address);
  }
  return out;
}

/** Opens the node's punching socket, learns its outside endpoint from the server and lists its own addresses. */
async function punchLearn(args: { key: string; server: ServerInstance; localPort?: number }): Promise<PunchLearnResult> {
  const s = await open(args.localPort);
  punchSockets.set(args.key, s);
  const r = await s.binding({ address: args.server.a1, port: args.server.p1 });
  return { local: s.port, ...(r?.reflexive ? { mapped: r.reflexive } : {}), hosts: hostAddresses() };
}

export type CandidateKind = 'host' | 'server-reflexive';

interface PunchPeer {
  name: string;
  candidates: { kind: CandidateKind; endpoint: TransportAddress }[];
}

export interface PunchArrival {
  peer: string;
  /** Which of the receiver's candidates the check was sent to. */
  kind: CandidateKind;
  from: TransportAddress;
  /** Local port it arrived at. */
  port: number;
}

export interface PunchResult {
  /** Checks from peers that arrived here (at the punching socket or, stray, at another). */
  requests: PunchArrival[];
  /** Answers to this node's checks: per peer and candidate of the peer's, where each came from. */
  answers: PunchArrival[];
}

const PUNCH_MESSAGE = /^labctl-punch (req|ans) (\S+) (\S+) (host|server-reflexive) /;

function parsePunch(data: Buffer): { type: 'req' | 'ans'; from: string; to: string; kind: CandidateKind } | undefined {
  const m = PUNCH_MESSAGE.exec(data.toString('utf8'));
  return m ? { type: m[1] as 'req' | 'ans', from: m[2]!, to: m[3]!, kind: m[4] as CandidateKind } : undefined;
}

const punchMessage = (type: 'req' | 'ans', from: string, to: string, kind: CandidateKind) =>
  Buffer.from(`labctl-punch ${type} ${from} ${to} ${kind} ${randomBytes(2).toString('hex')}`);

/**
 * ICE-style connectivity checks (RFC 8445 7.2): from the punching socket, sends a check
 * "labctl-punch req FROM TO KIND" to every candidate of every peer a few times over
 * durationMs (everyone starts at once), and answers every check that reaches the socket at
 * once, from the socket to wherever it came from, as an ICE agent answers a Binding request
 * (7.3). Reports which checks arrived and which answers came back, and from where: whether
 * an answer came from the endpoint the check went to is the host's to judge.
 */
export async function punch(args: { key: string; self: string; peers: PunchPeer[]; durationMs?: number; intervalMs?: number }): Promise<PunchResult> {
  const s = punchSockets.get(args.key);
  if (!s) throw new Error(`no punching socket "${args.key}": run punch-learn first`);
  const answer = (d: Datagram) => {
    const m = parsePunch(d.data);
    if (m?.type === 'req' && m.to === args.self) void s.send(punchMessage('ans', args.self, m.from, m.kind), d.from);
  };
  // Checks that came before this node started, then every later one as it comes (until punch-close).
  for (const d of s.inbox) answer(d);
  s.onInbox = answer;
  const duration = args.durationMs ?? 1000;
  const interval = args.intervalMs ?? 100;
  const t0 = Date.now();
  while (Date.now() - t0 < duration) {
    // Host candidates first, as ICE ranks them; all within one pass.
    for (const p of args.peers) for (const c of p.candidates) void s.send(punchMessage('req', args.self, p.name, c.kind), c.endpoint);
    await sleep(interval);
  }
  await sleep(interval);
  const requests: PunchArrival[] = [];
  const answers: PunchArrival[] = [];
  const seen = new Set<string>();
  // The punching socket's own inbox first: a check that also strayed elsewhere is reported where it belongs.
  for (const sock of [s, ...[...sockets].filter((x) => x !== s)]) {
    for (const d of sock.inbox) {
      const m = parsePunch(d.data);
      if (!m || m.to !== args.self) continue;
      const key = `${m.type} ${m.from} ${m.kind} ${d.from.address}:${d.from.port} ${d.port}`;
      const first = `${m.type} ${m.from} ${m.kind}`;
      if (seen.has(key) || (m.type === 'req' && seen.has(first))) continue;
      seen.add(key);
      seen.add(first);
      (m.type === 'req' ? requests : answers).push({ peer: m.from, kind: m.kind, from: d.from, port: d.port });
    }
  }
  return { requests, answers };
}

function punchClose(args: { key: string }): { closed: boolean } {
  const s = punchSockets.get(args.key);
  if (s) {
    delete s.onInbox;
    close(s);
  }
  punchSockets.delete(args.key);
  return { closed: !!s };
}

// ------------------------------------------------------------------ plain binding (interop, one-off)

async function bindingProbe(args: {
  to: TransportAddress;
  localPort?: number;
  changeIp?: boolean;
  changePort?: boolean;
  responsePort?: number;
  retransmit?: Partial<RetransmitOptions>;
}): Promise<Observation & { local: number }> {
  const s = await open(args.localPort);
  try {
    const r = await s.binding(args.to, {
      ...(args.changeIp ? { changeIp: true } : {}),
      ...(args.changePort ? { changePort: true } : {}),
      ...(args.responsePort !== undefined ? { responsePort: args.responsePort } : {}),
      ...(args.retransmit ? { retransmit: args.retransmit } : {}),
    });
    return { local: s.port, ...observe(args.to, r) };
  } finally {
    close(s);
  }
}

// ------------------------------------------------------------------ allocation sequence

/**
 * `count` new mappings one after another, each from a fresh inside port to `to`, so that
 * their order is the order the NAT handed the ports out. Every socket stays open to the end:
 * a port closed and given out again would be an existing mapping, not a new one.
 */
async function sequenceProbe(args: {
  to: TransportAddress;
  count: number;
  retransmit?: Partial<RetransmitOptions>;
}): Promise<(Observation & { local: number })[]> {
  const opened: StunSocket[] = [];
  const out: (Observation & { local: number })[] = [];
  try {
    for (let k = 0; k < args.count; k++) {
      const s = await open();
      opened.push(s);
      out.push({ local: s.port, ...observe(args.to, await s.binding(args.to, args.retransmit ? { retransmit: args.retransmit } : {})) });
    }
    return out;
  } finally {
    close(...opened);
  }
}

// ------------------------------------------------------------------ quota

/** What the quota probe saw (check/ports.ts QuotaResult reads it). */
export interface QuotaProbeResult {
  answered: number;
  refused: number;
  lostThenAnswered: number;
  reachedCap: boolean;
  cap: number;
  earlier: { tried: number; answered: number };
  existingMapping?: boolean;
}

/**
 * Opens flows from fresh inside ports to one server endpoint, `batch` at a time (one by
 * default: see below), each a new mapping, until one gets no answer or `cap` flows are open. A flow without an answer is sent
 * again (its own retransmissions have already run): an answer then means it was lost, not
 * refused, and opening goes on. Every socket stays open to the end, so no inside port is
 * reused (a reused one would be an existing mapping). Then: do the first flows still get
 * answers, and does the first inside port reach another server endpoint (under
 * endpoint-independent mapping no new mapping, so not refused)?
 */
async function quotaProbe(args: {
  to: TransportAddress;
  other?: TransportAddress;
  cap: number;
  batch?: number;
  retransmit?: Partial<RetransmitOptions>;
}): Promise<QuotaProbeResult> {
  const opts = args.retransmit ? { retransmit: args.retransmit } : {};
  // One at a time: new flows that reach the NAT at once on two CPUs can be given one random
  // port, and the second is dropped when conntrack confirms it (insert_failed): a race of
  // the burst, not the NAT's limit, which would be counted as a refusal.
  const batch = args.batch ?? 1;
  const opened: StunSocket[] = [];
  const answered: StunSocket[] = [];
  let refused = 0;
  let lostThenAnswered = 0;
  try {
    while (answered.length < args.cap && refused === 0) {
      const ss = await Promise.all(Array.from({ length: Math.min(batch, args.cap - answered.length) }, () => open()));
      opened.push(...ss);
      const first = await Promise.all(ss.map((s) => s.binding(args.to, opts)));
      const silent = ss.filter((_, i) => !first[i]);
      answered.push(...ss.filter((_, i) => first[i]));
      const again = await Promise.all(silent.map((s) => s.binding(args.to, opts)));
      for (const [i, s] of silent.entries()) {
        if (again[i]) {
          answered.push(s);
          lostThenAnswered++;
        } else refused++;
      }
    }
    const earlier = answered.slice(0, 3);
    const still = await Promise.all(earlier.map((s) => s.binding(args.to, opts)));
    const existing = args.other && answered[0] ? await answered[0].binding(args.other, opts) : undefined;
    return {
      answered: answered.length,
      refused,
      lostThenAnswered,
      reachedCap: refused === 0,
      cap: args.cap,
      earlier: { tried: earlier.length, answered: still.filter(Boolean).length },
      ...(args.other && answered[0] ? { existingMapping: !!existing } : {}),
    };
  } finally {
    close(...opened);
  }
}

export const PROBES = {
  mapping: mappingProbe,
  filtering: filteringProbe,
  hairpin: hairpinProbe,
  lifetime: lifetimeProbe,
  'punch-learn': punchLearn,
  punch,
  'punch-close': punchClose,
  binding: bindingProbe,
  quota: quotaProbe,
  sequence: sequenceProbe,
  hold: holdPort,
  release: releasePort,
  hosts: (args: { loopback?: boolean } = {}) => ({ hosts: hostAddresses(args.loopback) }),
  rtt: rttProbe,
} as const;

export type ProbeName = keyof typeof PROBES;
