// Readiness for the direct backend, the way systemd itself learns it: systemd-nspawn
// --notify-ready=yes sends READY=1 to $NOTIFY_SOCKET once the machine's own systemd has
// finished booting. That socket is an AF_UNIX datagram socket, which Node cannot open, so a
// socat process receives on it and hands each datagram to labctl on a pipe. Without socat the
// caller falls back to asking the machine's systemd (`systemctl is-system-running --wait`),
// which costs a few process starts per machine while it boots.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { sleep, whichExecutable } from '../util/process.js';

export interface NotifyWatch {
  /** the socket to give nspawn as NOTIFY_SOCKET */
  socket: string;
  /** resolves on READY=1 (with the leader pid nspawn announced), rejects when the receiver dies first */
  ready: Promise<{ leaderPid?: number }>;
  /** stops the receiver and removes the socket; safe to call more than once */
  close(): void;
}

/** The receiver's argv. socat parses its address argument, so the path must hold no `:,!` or spaces. */
export function receiverArgv(socket: string, timeoutSeconds: number): string[] {
  if (!/^[A-Za-z0-9/._@+-]+$/.test(socket)) throw new Error(`notify socket path ${socket} has characters socat would misread`);
  // -T: a receiver whose labctl died (SIGKILL) exits by itself once the boot timeout is over.
  return ['socat', '-u', '-T', String(timeoutSeconds), `UNIX-RECV:${socket},unlink-early,unlink-close`, 'STDOUT'];
}

/** Parses the datagrams nspawn sends (newline-separated assignments, datagrams back to back). */
export function parseNotify(text: string): { ready: boolean; leaderPid?: number } {
  // Datagrams arrive back to back without a separator ("…LEADER_PID=42READY=1").
  const ready = /READY=1/.test(text);
  const pid = /X_NSPAWN_LEADER_PID=(\d+)/.exec(text)?.[1];
  return { ready, ...(pid ? { leaderPid: Number(pid) } : {}) };
}

/** Starts a receiver on `socket`; undefined when socat is not installed. */
export async function watchReady(socket: string, timeoutMs: number): Promise<NotifyWatch | undefined> {
  if (!whichExecutable('socat')) return undefined;
  const argv = receiverArgv(socket, Math.ceil(timeoutMs / 1000) + 5);
  rmSync(socket, { force: true });
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    rmSync(socket, { force: true });
  };
  let received = '';
  let stderr = '';
  const ready = new Promise<{ leaderPid?: number }>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      const parsed = parseNotify(received);
      if (parsed.ready) resolve(parsed.leaderPid !== undefined ? { leaderPid: parsed.leaderPid } : {});
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', (e) => reject(new Error(`socat (the readiness receiver) failed: ${e.message}`)));
    child.on('exit', (code, signal) => {
      if (!closed) reject(new Error(`socat (the readiness receiver) exited (${code ?? signal}): ${stderr.trim()}`));
    });
  });
  ready.catch(() => {});
  // nspawn must not start before the socket exists, or its READY=1 goes nowhere.
  const deadline = Date.now() + 5000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      close();
      throw new Error(`socat (the readiness receiver) did not open ${socket}: ${stderr.trim() || 'timed out'}`);
    }
    await sleep(2);
  }
  return { socket, ready, close };
}
