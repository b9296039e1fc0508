// `labctl doctor`: what this host has of what labctl needs, each missing thing with its fix.
import { Option, type Command } from 'commander';
import { DEFAULT_DATA_DIR } from '../host/dirs.js';
import { action, example, printJson } from './common.js';

export function registerDoctorCommand(program: Command): void {
  example(
    program
      .command('doctor')
      .description(
        'check this host for what labctl needs (root, kernel features, tools, keyrings, backend, inotify limits, free space) and say how to fix what is missing; ' +
          'exit 0 when the default lab can come up, 1 when it cannot (warnings about what only some features need do not count); changes nothing',
      )
      .option('--json', 'print an array of {check, ok, severity, detail, fix}')
      .addOption(new Option('--data-dir <dir>', `where images would live (default $LABCTL_DATA_DIR or ${DEFAULT_DATA_DIR})`))
      .action(
        action(async (opts: { json?: boolean; dataDir?: string }) => {
          const { runDoctor } = await import('../host/doctor-read.js');
          const { doctorExitCode } = await import('../host/doctor.js');
          const checks = await runDoctor(opts.dataDir ? { dataDir: opts.dataDir } : {});
          if (opts.json) printJson(checks);
          else {
            const { formatDoctor } = await import('../report/doctor.js');
            process.stdout.write(formatDoctor(checks));
          }
          return doctorExitCode(checks);
        }),
      ),
    'sudo labctl doctor',
    'sudo labctl doctor --json | jq -r \'.[] | select(.ok | not) | "\\(.check): \\(.fix)"\'',
  );
}
