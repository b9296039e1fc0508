// A small client of the system bus for the systemd backend, on dbus-next's low-level
// API (no introspection round trips, explicit match rules).
//
// One connection per process, opened on first use. Every call has a timeout (dbus-next
// has none, and a call on a dead connection would wait forever), a broken connection
// fails every pending call at once, and the socket is unref'd while nothing is in
// flight, so an open bus never keeps the process alive. closeSystemBus() ends it.
import dbus from 'dbus-next';
import type { Socket } from 'node:net';

const { Message, Variant, DBusError, MessageType } = dbus;
export type DBusMessage = InstanceType<typeof Message>;
export { Variant };

const DEFAULT_CALL_TIMEOUT_MS = 25_000;
export const SYSTEM_BUS_SOCKET = '/run/dbus/system_bus_socket';

/** An error reply (or a failed connection) from the bus, with the D-Bus error name. */
export class BusError extends Error {
  constructor(
    readonly errorName: string,
    message: string,
  ) {
    super(message);
    this.name = 'BusError';
  }
}

/** True when e is an error reply named `name` (or ending in `.name`, e.g. 'NoSuchMachine'). */
export function isBusError(e: unknown, name: string): boolean {
  if (!(e instanceof BusError)) return false;
  return e.errorName === name || e.errorName.endsWith(`.${name}`);
}

type SignalHandler = (msg: DBusMessage) => void;

/** Turns dbus-next's values into plain ones: variants unwrapped (recursively), Buffers kept. */
export function plain(value: unknown): unknown {
  if (value instanceof Variant) return plain(value.value);
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = plain(v);
    return out;
  }
  return value;
}

export class SystemBus {
  private readonly bus: InstanceType<typeof dbus.MessageBus>;
  private readonly socket: Socket | undefined;
  private readonly failers = new Set<(e: Error) => void>();
  private readonly signalHandlers = new Set<SignalHandler>();
  private readonly matches = new Map<string, Promise<void>>();
  private inFlight = 0;
  /** set once the connection failed or was closed; a new SystemBus is needed then */
  broken: Error | undefined;

  constructor() {
    this.bus = dbus.systemBus();
    this.socket = (this.bus as unknown as { _connection?: { stream?: Socket } })._connection?.stream;
    const fail = (e: unknown) => {
      if (this.broken) return;
      this.broken = new BusError('org.freedesktop.DBus.Error.Disconnected', `system bus: ${e instanceof Error ? e.message : String(e)}`);
      for (const f of [...this.failers]) f(this.broken);
    };
    this.bus.on('error', fail);
    this.socket?.on('close', () => fail(new Error('connection closed')));
    this.bus.on('message', (msg: DBusMessage) => {
      if (msg.type !== MessageType.SIGNAL) return;
      for (const h of [...this.signalHandlers]) {
        try {
          h(msg);
        } catch {
          /* a handler's bug must not break the connection */
        }
      }
    });
    this.updateRef();
  }

  private updateRef(): void {
    if (!this.socket) return;
    if (this.inFlight > 0) this.socket.ref();
    else this.socket.unref();
  }

  /** Marks the connection busy (keeps the process alive) while fn runs. */
  async busy<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    this.updateRef();
    try {
      return await fn();
    } finally {
      this.inFlight--;
      this.updateRef();
    }
  }

  /** Calls a method and returns the reply's body. Error replies become BusError. */
  call(
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature = '',
    body: unknown[] = [],
    timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
  ): Promise<unknown[]> {
    if (this.broken) return Promise.reject(this.broken);
    return this.busy(
      () =>
        new Promise<unknown[]>((resolve, reject) => {
          let settled = false;
          const done = (fn: () => void) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            this.failers.delete(onFail);
            fn();
          };
          const onFail = (e: Error) => done(() => reject(e));
          const timer = setTimeout(
            () =>
              done(() => reject(new BusError('org.freedesktop.DBus.Error.Timeout', `${iface}.${member}: no reply from ${destination} within ${timeoutMs} ms`))),
            timeoutMs,
          );
          this.failers.add(onFail);
          const msg = new Message({ destination, path, interface: iface, member, signature, body });
          this.bus.call(msg).then(
            (reply) => done(() => resolve(reply?.body ?? [])),
            (e: unknown) =>
              done(() => {
                if (e instanceof DBusError) reject(new BusError(e.type, `${iface}.${member}: ${e.text || e.type}`));
                else reject(e instanceof Error ? e : new Error(String(e)));
              }),
          );
        }),
    );
  }

  async getProperty(destination: string, path: string, iface: string, name: string): Promise<unknown> {
    const [v] = await this.call(destination, path, 'org.freedesktop.DBus.Properties', 'Get', 'ss', [iface, name]);
    return plain(v);
  }

  async getAllProperties(destination: string, path: string, iface: string): Promise<Record<string, unknown>> {
    const [v] = await this.call(destination, path, 'org.freedesktop.DBus.Properties', 'GetAll', 's', [iface]);
    return (plain(v) ?? {}) as Record<string, unknown>;
  }

  /** Adds a match rule once per connection; resolves when the bus has it (so no signal is missed after). */
  addMatch(rule: string): Promise<void> {
    let p = this.matches.get(rule);
    if (!p) {
      p = this.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'AddMatch', 's', [rule]).then(() => undefined);
      p.catch(() => this.matches.delete(rule));
      this.matches.set(rule, p);
    }
    return p;
  }

  /** Registers a handler for every signal this connection receives; returns its remover. */
  onSignal(handler: SignalHandler): () => void {
    this.signalHandlers.add(handler);
    return () => this.signalHandlers.delete(handler);
  }

  /** Rejects with the connection's failure if it breaks; returns the remover. */
  onFailure(fn: (e: Error) => void): () => void {
    this.failers.add(fn);
    return () => this.failers.delete(fn);
  }

  close(): void {
    if (!this.broken) this.broken = new BusError('org.freedesktop.DBus.Error.Disconnected', 'system bus: closed');
    for (const f of [...this.failers]) f(this.broken);
    this.signalHandlers.clear();
    try {
      this.bus.disconnect();
    } catch {
      /* already gone */
    }
    this.socket?.destroy();
  }
}

let shared: SystemBus | undefined;

/** The process's system bus connection (a new one if the last one broke). */
export function systemBus(): SystemBus {
  if (!shared || shared.broken) shared = new SystemBus();
  return shared;
}

/** True when a connection is open (for tests). */
export function systemBusOpen(): boolean {
  return Boolean(shared && !shared.broken);
}

/** Closes the process's connection, if any. Safe to call more than once. */
export function closeSystemBus(): void {
  shared?.close();
  shared = undefined;
}
