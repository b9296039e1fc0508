// A resolved scenario: its lab loaded (params put in), every step checked against it and
// every default filled in. Produced only by load.ts; the runner (run.ts, steps.ts) reads it.
import type { Dependency } from '../lab/behaviour.js';
import type { LinkShaping } from '../lab/impairment.js';
import type { Lab } from '../lab/model.js';
import type { StepKind } from './schema.js';

/** Output matching: a substring, or a regular expression. */
export type Matcher = { kind: 'substring'; text: string } | { kind: 'regex'; source: string; regex: RegExp };

export interface OutputExpectation {
  /** Accepted exit statuses. */
  exit: number[];
  stdout?: Matcher;
  stderr?: Matcher;
}

export interface CommandSpec {
  /** A member of the lab (its name in the lab file). */
  on: string;
  command: string[];
  input?: string;
}

export interface ExecSpec extends CommandSpec {
  timeoutMs: number;
  expect: OutputExpectation;
}

export interface BackgroundSpec extends CommandSpec {
  ready?: { stdout?: Matcher; stderr?: Matcher };
  timeoutMs: number;
}

export type WaitSpec = { seconds: number } | { until: CommandSpec & { expect: OutputExpectation }; timeoutMs: number; intervalMs: number };

export interface DeliverySpec {
  protocol: 'udp' | 'tcp';
  from: string;
  fromPort?: number;
  to: { address: string; port: number };
  /** Where the receiver listens: a member and a port. */
  at: { member: string; port: number };
  /** How `at` was chosen, for messages ("the forward of c0-nat"). */
  atWhy: string;
  expect: 'delivered' | 'dropped';
  withinMs: number;
}

export interface CheckSpec {
  nat?: string;
  expect: 'declared' | { mapping?: Dependency; filtering?: Dependency; type?: string };
  runs: number;
}

export type LinkSpec =
  /** options: as the file gives them (for messages); shaping: what they set, per direction (lab/resolve-links.ts). */
  | { action: 'set'; between: [string, string]; options: Record<string, string>; shaping: Partial<LinkShaping> }
  | { action: 'reset'; between: [string, string] | 'all' }
  | { action: 'down' | 'up'; between: [string, string] };

export interface CaptureSpec {
  on: string;
  link?: string;
  /** Absolute path of the pcapng file. */
  file: string;
  filter: string[];
}

export type StepSpec =
  | { kind: 'exec'; exec: ExecSpec }
  | { kind: 'background'; background: BackgroundSpec }
  | { kind: 'wait'; wait: WaitSpec }
  | { kind: 'expect-udp' | 'expect-tcp'; delivery: DeliverySpec }
  | { kind: 'flush'; nats: string[] }
  | { kind: 'check'; check: CheckSpec }
  | { kind: 'link'; link: LinkSpec };

export type Step = StepSpec & { name: string; index: number; capture?: CaptureSpec };

export interface Scenario {
  name: string;
  description?: string;
  /** Absolute path of the scenario file. */
  file: string;
  lab: Lab;
  /**
   * The lab file's text with params put in, when it used any: `labctl test` brings the lab up
   * from a copy of it (in the lab's run dir), so that labctl's other commands (link, capture,
   * check, down) read the same definition from the state file.
   */
  labText?: string;
  /** Boot the lab's machines (false: the network alone). */
  machines: boolean;
  params: Record<string, string | number | boolean>;
  captures: CaptureSpec[];
  steps: Step[];
}

export type { StepKind };
