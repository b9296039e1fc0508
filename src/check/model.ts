// What `labctl check` works on and reports: targets (a NAT seen through a node behind it),
// what the lab declares for that view, and what the probes measured.
import type { Dependency } from '../lab/behaviour.js';
import type { Pooling, PortBehaviour, PortBlock, QuotaResult } from './ports.js';

export type { PortBehaviour };

/** The behaviour a lab file declares for the view from one node: its NAT composed with every NAT above it. */
export interface Declared {
  mapping: Dependency;
  filtering: Dependency;
  /** Left out when unknown (e.g. `--expect` names only a type). */
  hairpinning?: boolean;
  port?: PortBehaviour;
  /** The shortest UDP timeouts on the path, seconds. */
  timeouts?: { unreplied: number; stream: number };
  /**
   * The outside addresses the node's flows may leave from: one (paired) or several
   * (arbitrary); `shown` when the row is worth printing (a NAT on the path has several).
   */
  pooling?: { value: 'paired' | 'arbitrary'; addresses: string[]; shown: boolean };
  /** The port blocks the node's flows must stay in (the outermost NAT with blocks). */
  blocks?: PortBlock[];
  /**
   * New flows the node can open at once: the smallest quota or block capacity on the path,
   * and whose; `atLeast` where the NAT may refuse a few before (see composeDeclared).
   */
  limit?: { flows: number; why: string; atLeast?: number };
  /** How it was composed, when more than one NAT is on the path. */
  composition?: string;
}

export interface PathHop {
  name: string;
  netns: string;
  /** A NAT labctl built (its learned mappings live in the `ip labctl` table). */
  labctl: boolean;
}

export interface Target {
  /** The NAT's name (labctl labs) or the first NAT namespace on the path (--namespace). */
  name: string;
  probe: { node?: string; netns: string };
  /** NAT namespaces between the probe and the internet, innermost first. */
  path: PathHop[];
  /** Targets in one group share an outside NAT: their probes must not share remote endpoints. */
  group: string;
  /** Inside port for the filtering and hairpinning probes (the target of a fixed-port NAT's forward), or undefined for any. */
  localPort?: number;
  /** Inside port for the mapping probes too (--port: other inside ports may get no answers at all). */
  mappingPort?: number;
  declared?: Declared;
  notes: string[];
}

export type Verdict<T> = T | 'inconsistent' | 'unknown';

export interface Row {
  test: string;
  declared?: string;
  measured: string;
  /** undefined when nothing was declared. */
  match?: boolean;
  evidence: string;
}

export interface Measured {
  mapping: Verdict<Dependency>;
  filtering: Verdict<Dependency>;
  hairpinning: Verdict<boolean>;
  /** Where a hairpinned packet appeared to come from. */
  hairpinSource?: 'outside' | 'inside' | 'other';
  port: Verdict<PortBehaviour>;
  /** One inside port kept one outside port towards all four server endpoints. */
  keepsPort: Verdict<boolean>;
  outsideAddress?: string;
  /** Outside addresses of the node's flows to both server addresses. */
  pooling?: Pooling;
  outsideAddresses?: string[];
  /** `--quota`: what opening flows until one was refused saw. */
  quota?: QuotaResult;
}

export interface TargetReport {
  name: string;
  probe: { node?: string; netns: string };
  path: string[];
  declared?: Declared;
  measured: Measured;
  rows: Row[];
  /** true: every declared row matched; false: at least one differs; undefined: nothing declared. */
  match?: boolean;
  notes: string[];
}

export interface ServerInfo {
  netns: string;
  addresses: string[];
  ports: [number, number];
  /** Port pairs used for concurrent probes (the first is the standard one). */
  portPairs: number;
  external: boolean;
}

export interface CheckReport {
  lab?: string;
  server: ServerInfo;
  repetitions: number;
  targets: TargetReport[];
  match: boolean;
  /**
   * NATs whose mapping or filtering could not be measured at all (no answer to any probe):
   * an error of the lab or the path (exit 2), not a NAT that differs from its declaration.
   */
  unmeasured: string[];
  durationMs: number;
}
