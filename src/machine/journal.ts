// What the journal says about a systemd-backend machine that failed to start: its unit's
// last lines, for the error message.
import { run } from '../exec/run.js';
import { sleep, whichExecutable } from '../util/process.js';

const JOURNAL_LINES = 20;

/**
 * The unit's last journal lines since `since` (its nspawn's messages and the machine's
 * console), plus systemd's own lines about the unit ("start operation timed out",
 * "Failed with result ...") even when the console went on printing after them. Empty
 * where there is no journalctl or it says nothing.
 */
export async function journalTail(unit: string, since: Date, lines = JOURNAL_LINES): Promise<string> {
  const journalctl = whichExecutable('journalctl');
  if (!journalctl) return '';
  // journald may still be writing the last lines a failing nspawn printed.
  await sleep(300);
  const r = await run([journalctl, '--unit', unit, '--since', `@${Math.floor(since.getTime() / 1000)}`, '--no-pager', '--output', 'json'], {
    allowFailure: true,
    timeoutMs: 10_000,
    step: `read the journal of ${unit}`,
  });
  if (r.exitCode !== 0) return '';
  return tailOfJournal(r.stdout, lines);
}

/** From `journalctl -o json` output: the last `lines` messages, then the manager's (PID 1's) that those left out. */
export function tailOfJournal(jsonLines: string, lines = JOURNAL_LINES): string {
  const entries: { message: string; manager: boolean }[] = [];
  for (const line of jsonLines.split('\n')) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line) as { MESSAGE?: string | number[] | null; _PID?: string };
      const m = e.MESSAGE;
      const message = typeof m === 'string' ? m : Array.isArray(m) ? Buffer.from(m).toString('utf8') : '';
      entries.push({ message: message.replace(/\r/g, '').trimEnd(), manager: e._PID === '1' });
    } catch {
      /* not a journal entry */
    }
  }
  const tail = entries.slice(-lines);
  const missed = entries.slice(0, -lines).filter((e) => e.manager);
  return [...tail.map((e) => e.message), ...missed.slice(-5).map((e) => `(systemd) ${e.message}`)].join('\n').trim();
}
