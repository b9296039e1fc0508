// A check session: the STUN server's addresses added in the internet namespace, the
// server agent running there, a client agent in every probing namespace, and NAT state
// flushed before, between and after the probes. Whatever it set up is removed at the end,
// also when interrupted (SIGINT/SIGTERM).
import { run } from '../exec/run.js';
import { inNetns } from '../host/netns.js';
import { FLUSH_LEARNED_STATE } from '../nat/compile.js';
import type { Lab } from '../lab/model.js';
import type { ServerInstance } from '../stun/probes.js';
import type { TransportAddress } from '../stun/message.js';
import { Agent } from './agent-process.js';
import type { PathHop, ServerInfo } from './model.js';
import { addStunSite, chooseAddresses, namespaceSubnets, removeStunSite, type StunSite, withCheckLock } from './stun-site.js';

export const BASE_PORT = 3478;

/**
 * With LABCTL_CHECK_TRACE set, prints when each step of a check ends, in ms since the
 * process started (for tuning and the benchmark).
 */
export function trace(what: string): void {
  if (process.env.LABCTL_CHECK_TRACE) process.stderr.write(`[check +${Math.round(performance.now())} ms] ${what}\n`);
}

export interface SessionOptions {
  serverNetns: string;
  /** Namespaces that run probes. */
  clientNetns: string[];
  /** Port pairs the server opens (one per concurrent probe in a group). */
  portPairs: number;
  /** The lab, when labctl built it (its subnets are known without asking the kernel). */
  lab?: Lab;
  /** Namespaces whose addresses the server's addresses must not clash with (namespace mode). */
  scanNetns?: string[];
  serverAddresses?: [string, string];
  /** A third-party RFC 5780 server at this address (its first -L address for coturn): labctl runs none. */
  externalServer?: TransportAddress;
  /** Work done (under the lock) while the server and agents start, finished before the probes. */
  prepare?: () => Promise<void>;
}

export interface Session {
  server: ServerInfo;
  instances: ServerInstance[];
  agent(netns: string): Agent;
  /** Work for the end, done while the agents stop (e.g. the last flush). */
  atEnd(fn: () => Promise<void>): void;
}

const cleanups = new Set<() => Promise<void>>();
let signalsHooked = false;
let stopRequested: (() => void) | undefined;

/** Resolves at SIGINT or SIGTERM (for `check --serve`, which runs until then); signals then end the session normally. */
export function untilSignal(): Promise<void> {
  hookSignals();
  return new Promise((resolve) => {
    stopRequested = resolve;
  });
}

/** Removes whatever open sessions set up, then exits (for errors nothing else caught). */
function cleanUpAndExit(code: number): void {
  void Promise.allSettled([...cleanups].map((c) => c())).then(() => process.exit(code));
}

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`labctl: ${e instanceof Error ? e.message : String(e)}\n`);
    cleanUpAndExit(2);
  });
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopRequested) {
      const stop = stopRequested;
      stopRequested = undefined;
      process.once(sig, onSignal);
      return stop();
    }
    process.stderr.write(`labctl: ${sig}: removing what check set up\n`);
    void Promise.allSettled([...cleanups].map((c) => c())).then(() => process.exit(2));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

function labSubnets(lab: Lab): string[] {
  return [...lab.nodes.map((n) => n.link.subnet), ...lab.nats.flatMap((n) => [n.lan.subnet, n.outside.subnet]), ...lab.internet.links.map((l) => l.subnet)];
}

/** Runs fn with a session open; everything is torn down afterwards. */
export async function withSession<T>(options: SessionOptions, fn: (s: Session) => Promise<T>): Promise<T> {
  hookSignals();
  return withCheckLock(options.serverNetns, async () => {
    trace('session starts');
    const agents = new Map<string, Agent>();
    let site: StunSite | undefined;
    let serverAgent: Agent | undefined;
    const atEnd: (() => Promise<void>)[] = [];
    const teardown = async () => {
      await Promise.allSettled([
        ...atEnd.splice(0).map((f) => f()),
        ...[...agents.values(), ...(serverAgent ? [serverAgent] : [])].map((a) => a.stop()),
        ...(site ? [removeStunSite(site)] : []),
      ]);
    };
    cleanups.add(teardown);
    const prepared = options.prepare?.();
    prepared?.catch(() => undefined);
    try {
      // Start what takes longest first: the server's addresses and processes, then the clients'.
      const addressesFor = async (): Promise<[string, string]> => {
        if (options.serverAddresses) return options.serverAddresses;
        const subnets = options.lab
          ? labSubnets(options.lab)
          : (await Promise.all([...new Set([options.serverNetns, ...(options.scanNetns ?? [])])].map(namespaceSubnets))).flat();
        return chooseAddresses(subnets);
      };
      const siteAdded = options.externalServer
        ? undefined
        : addressesFor().then(async (addresses) => {
            site = await addStunSite(options.serverNetns, addresses);
            trace(`server addresses ${addresses.join(', ')} added in ${options.serverNetns}`);
            return addresses;
          });
      siteAdded?.catch(() => undefined);
      // The server's process boots while its addresses are added, then binds them.
      const booting = options.externalServer ? undefined : Agent.start(options.serverNetns, 'client');
      booting?.catch(() => undefined);
      const clientStarts = [...new Set(options.clientNetns)].map(async (ns) => agents.set(ns, await Agent.start(ns, 'client')));
      // Awaited below; until then a failure must not count as unhandled (it would end the process before the clean-up).
      for (const p of clientStarts) p.catch(() => undefined);
      let server: ServerInfo;
      let instances: ServerInstance[];
      if (options.externalServer) {
        await Promise.all(clientStarts);
        const ext = options.externalServer;
        const first = agents.get(options.clientNetns[0]!)!;
        const r = await first.call<{ mapped?: TransportAddress; otherAddress?: TransportAddress; from?: TransportAddress }>('binding', { to: ext });
        if (!r.from) throw new Error(`the STUN server at ${ext.address}:${ext.port} did not answer a Binding request from ${first.netns}`);
        if (!r.otherAddress)
          throw new Error(
            `the STUN server at ${ext.address}:${ext.port} sent no OTHER-ADDRESS: it does not do RFC 5780 behaviour discovery (coturn: run turnserver -n with two -L addresses)`,
          );
        instances = [{ a1: ext.address, p1: ext.port, a2: r.otherAddress.address, p2: r.otherAddress.port }];
        server = {
          netns: options.serverNetns,
          addresses: [ext.address, r.otherAddress.address],
          ports: [ext.port, r.otherAddress.port],
          portPairs: 1,
          external: true,
        };
      } else {
        let addresses: [string, string];
        try {
          addresses = await siteAdded!;
        } finally {
          serverAgent = await booting!.catch(() => undefined);
        }
        if (!serverAgent) await booting; // rethrows why it did not start
        const portPairs: [number, number][] = Array.from({ length: Math.max(1, options.portPairs) }, (_, k) => [BASE_PORT + 2 * k, BASE_PORT + 2 * k + 1]);
        await Promise.all([serverAgent!.call('serve', { addresses, portPairs }, 60_000), ...clientStarts]);
        trace(`server and ${agents.size} client agent(s) started`);
        instances = portPairs.map(([p1, p2]) => ({ a1: addresses[0], a2: addresses[1], p1, p2 }));
        server = { netns: options.serverNetns, addresses, ports: portPairs[0]!, portPairs: portPairs.length, external: false };
      }
      await prepared;
      return await fn({
        server,
        instances,
        atEnd: (f) => atEnd.push(f),
        agent: (ns) => {
          const a = agents.get(ns);
          if (!a) throw new Error(`no probe agent in ${ns}`);
          return a;
        },
      });
    } finally {
      cleanups.delete(teardown);
      await teardown();
      trace('torn down');
    }
  });
}

/**
 * Makes NAT routers forget flows and learned mappings: conntrack -F everywhere, and in NATs
 * labctl built also the learned mappings and peers of the `ip labctl` table.
 */
export async function flushHops(hops: PathHop[]): Promise<void> {
  const seen = new Map<string, PathHop>();
  for (const h of hops) seen.set(h.netns, h);
  await Promise.all(
    [...seen.values()].map(async (h) => {
      await Promise.all([
        h.labctl
          ? run(inNetns(h.netns, ['nft', '-f', '-']), {
              step: `flush learned mappings in ${h.netns}`,
              input: FLUSH_LEARNED_STATE,
              allowFailure: true,
            })
          : undefined,
        // conntrack -F exits 1 with "0 flow entries" on an empty table on some versions.
        run(inNetns(h.netns, ['conntrack', '-F']), { step: `flush conntrack in ${h.netns}`, allowFailure: true }),
      ]);
    }),
  );
}
