// labctl's RFC 5780 STUN server (server.ts) run by labctl itself, in the foreground: by
// `labctl stun-server` on any host with two addresses (a cloud VM; systemd/labctl-stun-server.service
// runs it as a unit), and described in the same words by `labctl check --serve`, which runs
// the same server inside a lab's internet namespace (through its probe agent).
import { isIP } from 'node:net';
import { LabctlError, UsageError } from '../util/errors.js';
import { formatEndpoint } from './message.js';
import { StunServer } from './server.js';

/** RFC 5389's port for STUN over UDP, and the next one as the alternate (RFC 5780 needs two). */
export const STUN_PORT = 3478;
export const STUN_ALT_PORT = 3479;

export interface ServePlan {
  addresses: [string, string];
  ports: [number, number];
}

function port(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < 1 || n > 65535)
    throw new UsageError(`${name} wants a port number from 1 to 65535 (got "${text}")`);
  return n;
}

/**
 * `labctl stun-server` options to what the server binds. RFC 5780 behaviour discovery
 * needs two addresses of one family and two ports: a client asks for answers from the other
 * address, the other port, or both. Pure.
 */
export function parseServePlan(o: { address?: string; altAddress?: string; port?: string; altPort?: string }): ServePlan {
  if (!o.address || !o.altAddress)
    throw new UsageError('--address and --alt-address are both needed: RFC 5780 behaviour discovery answers from a second address of this host');
  for (const [flag, a] of [
    ['--address', o.address],
    ['--alt-address', o.altAddress],
  ] as const) {
    if (!isIP(a)) throw new UsageError(`${flag} wants an IPv4 or IPv6 address of this host (got "${a}")`);
  }
  if (isIP(o.address) !== isIP(o.altAddress))
    throw new UsageError(`--address ${o.address} and --alt-address ${o.altAddress} must be of one family (both IPv4 or both IPv6)`);
  if (o.address === o.altAddress) throw new UsageError(`--alt-address must differ from --address (both are ${o.address}): RFC 5780 needs two addresses`);
  const p = port('--port', o.port, STUN_PORT);
  const q = port('--alt-port', o.altPort, p === STUN_ALT_PORT ? STUN_PORT : p === STUN_PORT ? STUN_ALT_PORT : p + 1);
  if (p === q) throw new UsageError(`--alt-port must differ from --port (both are ${p}): RFC 5780 needs two ports`);
  return { addresses: [o.address, o.altAddress], ports: [p, q] };
}

/** The server's four endpoints, in RFC 5780's order: A1:P1, A1:P2, A2:P1, A2:P2. */
export function servedEndpoints(addresses: readonly string[], ports: readonly number[]): string[] {
  return addresses.flatMap((address) => ports.map((p) => formatEndpoint({ address, port: p })));
}

/** "labctl's STUN server (RFC 5389, RFC 5780) is listening [in NS] on A1:P1, A1:P2, A2:P1 and A2:P2". */
export function listeningLine(addresses: readonly string[], ports: readonly number[], netns?: string): string {
  const eps = servedEndpoints(addresses, ports);
  return `labctl's STUN server (RFC 5389, RFC 5780) is listening${netns ? ` in ${netns}` : ''} on ${eps.slice(0, -1).join(', ')} and ${eps.at(-1)}`;
}

/** Why a socket could not be bound, in the user's terms (the errno alone says little). */
export function bindFailure(e: unknown, plan: ServePlan): Error {
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
  const where = err.address !== undefined && err.port !== undefined ? formatEndpoint({ address: err.address, port: err.port }) : plan.addresses.join(' or ');
  switch (err.code) {
    case 'EADDRNOTAVAIL':
      return new UsageError(
        `cannot listen on ${where}: ${err.address ?? 'that'} is not an address of this host (\`ip addr\` lists them; on a cloud VM give the private addresses, the provider maps the public ones to them)`,
      );
    case 'EADDRINUSE':
      return new LabctlError(`cannot listen on ${where}: the port is in use (another STUN server, coturn's turnserver?)`);
    case 'EACCES':
      return new LabctlError(
        `cannot listen on ${where}: ports below 1024 need CAP_NET_BIND_SERVICE (run as root, or give the systemd unit AmbientCapabilities=CAP_NET_BIND_SERVICE)`,
      );
    default:
      return new LabctlError(`cannot listen on ${where}: ${err.message}`);
  }
}

/**
 * Runs the server in this process until SIGINT or SIGTERM (or until `stop` resolves), then
 * closes it. onReady is called once every socket is bound. Returns how many requests it answered.
 */
export async function serveForeground(plan: ServePlan, onReady: (server: StunServer) => void, stop?: Promise<void>): Promise<number> {
  let server: StunServer;
  try {
    server = await StunServer.start({ addresses: plan.addresses, portPairs: [plan.ports] });
  } catch (e) {
    throw bindFailure(e, plan);
  }
  let onSignal: (() => void) | undefined;
  const signalled = new Promise<void>((resolve) => {
    onSignal = resolve;
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  try {
    onReady(server);
    await Promise.race(stop === undefined ? [signalled] : [signalled, stop]);
  } finally {
    process.off('SIGINT', onSignal!);
    process.off('SIGTERM', onSignal!);
    server.close();
  }
  return server.requests;
}
