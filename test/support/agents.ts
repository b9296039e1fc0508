// Drives udp-agent.mjs processes inside lab namespaces from a test.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const AGENT = fileURLToPath(new URL('./udp-agent.mjs', import.meta.url));

export interface Datagram {
  port: number;
  from: string;
  fromPort: number;
  msg: string;
}

export class UdpAgent {
  readonly received: Datagram[] = [];
  private waiters: (() => void)[] = [];
  private constructor(
    readonly netns: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {}

  static async start(netns: string, ports: number[]): Promise<UdpAgent> {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, AGENT, ...ports.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const agent = new UdpAgent(netns, child);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    await new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout });
      rl.on('line', (line) => {
        const ev = JSON.parse(line) as { event: string } & Datagram;
        if (ev.event === 'ready') resolve();
        if (ev.event === 'recv') {
          agent.received.push({ port: ev.port, from: ev.from, fromPort: ev.fromPort, msg: ev.msg });
          for (const w of agent.waiters.splice(0)) w();
        }
      });
      child.on('exit', (code) => reject(new Error(`udp agent in ${netns} exited ${code}: ${stderr}`)));
    });
    return agent;
  }

  send(localPort: number, host: string, port: number, msg: string): void {
    this.child.stdin.write(`send ${localPort} ${host} ${port} ${msg}\n`);
  }

  /** Waits until a datagram with this message arrives, or returns undefined after timeoutMs. */
  async waitFor(msg: string, timeoutMs = 1000): Promise<Datagram | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.received.find((d) => d.msg === msg);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(t);
  }
}
