// `labctl nat ...`: NATs as they are in the field. `labctl nat profiles [NAME] [--json]`
// lists the named profiles a lab's `nat: { profile: NAME }` can start from, every value
// with its source (or why labctl chose it where no source gives one). No root needed.
import type { Command } from 'commander';
import { UsageError } from '../util/errors.js';
import { action, example, printJson } from './common.js';

export function registerNatCommands(program: Command): void {
  const nat = example(
    program.command('nat').description("NATs as they are in the field: the profiles a lab's `nat:` can name"),
    'labctl nat profiles',
    'labctl nat profiles cgnat-rfc6888',
  );
  example(
    nat
      .command('profiles')
      .description('list the NAT profiles (home routers, carrier-grade NATs, cloud NAT gateways) with every value and its source')
      .argument('[name]', 'only this profile')
      .option('--json', 'print as JSON')
      .action(
        action(async (name: string | undefined, opts: { json?: boolean }) => {
          const { NAT_PROFILES, NAT_PROFILE_NAMES } = await import('../lab/nat-profiles.js');
          const profiles = name === undefined ? Object.values(NAT_PROFILES) : [NAT_PROFILES[name]];
          if (profiles[0] === undefined) throw new UsageError(`unknown NAT profile "${name}": it must be one of ${NAT_PROFILE_NAMES.join(', ')}`);
          if (opts.json) return printJson(profiles);
          const { formatProfilesText } = await import('../report/nat-profiles.js');
          process.stdout.write(formatProfilesText(profiles as NonNullable<(typeof profiles)[number]>[]));
        }),
      ),
    'labctl nat profiles',
    'labctl nat profiles aws-nat-gateway --json',
  );
}
