// Starting labctl's probe agent (src/stun/agent.ts) inside a namespace from the host:
//   ip netns exec NS node dist/stun/agent.js client|server ...
// with the host's own node (process.execPath), so nothing needs to be installed in a
// machine there, and whether or not a machine is booted in the namespace.
//
// One-shot commands go through src/exec/run.ts; the agents are long-lived processes that
// talk JSON lines over stdin/stdout, which run() cannot do, so they are spawned here with
// the same conventions: an argument array (never a shell string), recorded in commandLog.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { commandLog, ipNetnsExec } from '../exec/run.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');

function newestMtime(dir: string, ext: string): number {
  try {
    return Math.max(
      0,
      ...readdirSync(dir)
        .filter((f) => f.endsWith(ext))
        .map((f) => statSync(join(dir, f)).mtimeMs),
    );
  } catch {
    return 0;
  }
}

/**
 * The command that runs the agent: the bundled dist/bundle/agent.cjs beside the bundled CLI;
 * else the compiled dist/stun/agent.js when it exists (and is not older than src/stun when
 * running from a checkout); else src/stun/agent.ts through tsx.
 */
function agentCommand(): string[] {
  const bundled = join(HERE, 'agent.cjs');
  if (HERE.endsWith(join('dist', 'bundle')) && existsSync(bundled)) return [process.execPath, bundled];
  const beside = join(HERE, '..', 'stun', 'agent.js');
  if (HERE.endsWith(join('dist', 'check')) && existsSync(beside)) return [process.execPath, beside];
  const dist = join(ROOT, 'dist', 'stun', 'agent.js');
  const srcDir = join(ROOT, 'src', 'stun');
  if (existsSync(dist) && (!existsSync(srcDir) || statSync(dist).mtimeMs >= newestMtime(srcDir, '.ts'))) {
    return [process.execPath, dist];
  }
  // Only ever reached from the sources (the bundle, CommonJS, has no import.meta.resolve).
  return [process.execPath, '--import', import.meta.resolve('tsx'), join(srcDir, 'agent.ts')];
}

class AgentError extends Error {
  override name = 'AgentError';
}

interface Waiting {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A running agent in a namespace. */
export class Agent {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private stderr = '';
  private exited = false;
  readyInfo: Record<string, unknown> = {};

  private constructor(
    readonly netns: string,
    readonly mode: 'client' | 'server',
    private readonly proc: ResultPromise,
  ) {}

  static async start(netns: string, mode: 'client' | 'server', arg?: unknown, timeoutMs = 60_000): Promise<Agent> {
    const command = ipNetnsExec(netns, [...agentCommand(), mode, ...(arg !== undefined ? [JSON.stringify(arg)] : [])]);
    commandLog.push(command);
    const proc = execa(command[0]!, command.slice(1), { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false, buffer: false });
    const agent = new Agent(netns, mode, proc);
    proc.stderr?.on('data', (d: Buffer) => {
      agent.stderr = (agent.stderr + String(d)).slice(-4000);
    });
    proc.stdin?.on('error', () => {
      /* the agent exited before reading */
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new AgentError(`the probe agent in ${netns} did not start within ${timeoutMs / 1000} s${agent.describeStderr()}`)),
        timeoutMs,
      );
      const rl = createInterface({ input: proc.stdout! });
      rl.on('line', (line) => {
        let msg: { event?: string; id?: number; result?: unknown; error?: string; message?: string };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          return;
        }
        if (msg.event === 'ready') {
          clearTimeout(timer);
          agent.readyInfo = msg as Record<string, unknown>;
          resolve();
        } else if (msg.event === 'error') {
          clearTimeout(timer);
          reject(new AgentError(`the probe agent in ${netns} failed: ${msg.message}`));
        } else if (typeof msg.id === 'number') {
          const w = agent.waiting.get(msg.id);
          if (!w) return;
          agent.waiting.delete(msg.id);
          clearTimeout(w.timer);
          if (msg.error !== undefined) w.reject(new AgentError(`probe in ${netns}: ${msg.error}`));
          else w.resolve(msg.result);
        }
      });
      void proc.then((r) => {
        agent.exited = true;
        clearTimeout(timer);
        const why = new AgentError(`the probe agent in ${netns} exited (${r.exitCode ?? r.signal ?? '?'})${agent.describeStderr()}`);
        reject(why);
        for (const w of agent.waiting.values()) {
          clearTimeout(w.timer);
          w.reject(why);
        }
        agent.waiting.clear();
      });
    });
    try {
      await ready;
    } catch (e) {
      await agent.stop();
      throw e;
    }
    return agent;
  }

  private describeStderr(): string {
    const s = this.stderr.trim();
    return s ? `:\n${s.split('\n').slice(-6).join('\n')}` : '';
  }

  /** Runs one probe op in the agent and returns its JSON result. */
  call<T>(op: string, args: unknown, timeoutMs = 90_000): Promise<T> {
    if (this.exited) return Promise.reject(new AgentError(`the probe agent in ${this.netns} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new AgentError(`probe "${op}" in ${this.netns} did not answer within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.proc.stdin!.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }

  /** Closes its stdin (the agent then exits) and waits; kills it if it lingers. */
  async stop(): Promise<void> {
    if (!this.exited) {
      try {
        this.proc.stdin?.end();
      } catch {
        /* already closed */
      }
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
      await this.proc;
      clearTimeout(t);
    }
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }
}
