// `labctl logs MACHINE [SERVICE]`: a machine's journal, or one service's, from outside. The
// machine's own journalctl runs inside it through the backend's execArgv (nsenter), the same
// on both backends: the direct backend's machines are not registered with machined, so
// `journalctl -M` could not reach them, and their journal lives in the machine's /run.
import type { Command } from 'commander';
import { action, example, requireRoot } from './common.js';
import { UsageError } from '../util/errors.js';

/** journalctl's arguments for `labctl logs`: the unit (a bare name is NAME.service), how many lines, follow. */
export function journalctlArgs(service: string | undefined, opts: { follow?: boolean; lines?: string }): string[] {
  const args = ['journalctl', '--no-pager', '--output', 'short-precise'];
  if (service) args.push('--unit', service.includes('.') ? service : `${service}.service`);
  if (opts.lines !== undefined) {
    if (!/^\d+$/.test(opts.lines)) throw new UsageError(`--lines must be a whole number, not "${opts.lines}"`);
    args.push('--lines', opts.lines);
  }
  if (opts.follow) args.push('--follow');
  return args;
}

export function registerLogsCommand(program: Command): void {
  example(
    program
      .command('logs')
      .description("show a machine's journal, or one of its services' (journalctl in the machine)")
      .argument('<machine>', 'machine name, e.g. c0')
      .argument('[service]', 'a service of the lab file (or any unit of the machine); default: the whole journal')
      .option('-f, --follow', 'keep printing new lines until Ctrl-C')
      .option('-n, --lines <count>', 'only the last COUNT lines')
      .action(
        action(async (name: string, service: string | undefined, opts: { follow?: boolean; lines?: string }) => {
          const args = journalctlArgs(service, opts);
          requireRoot('logs', "it enters a machine's namespaces");
          const { findMachine, passThrough } = await import('./machines.js');
          const m = await findMachine(name);
          const { backendFor } = await import('../machine/select.js');
          return passThrough(await (await backendFor(m.backend)).execArgv(m, args));
        }),
      ),
    'sudo labctl logs server echo',
    'sudo labctl logs server echo --follow',
    'sudo labctl logs c1-nat -n 50',
  );
}
