// `labctl test SCENARIO`: runs a scenario (src/scenario): the lab it needs, then its steps, each
// passed or failed, with JUnit XML and JSON for CI. Exit 0 every step passed, 1 a step
// failed (or the lab could not come up), 2 a bad scenario (nothing started), 130 Ctrl-C.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { action, example, printJson, requireRoot } from './common.js';
import { UsageError } from '../util/errors.js';
import type { BackendName } from '../machine/backend.js';

interface TestCliOptions {
  keep?: boolean;
  junit?: string;
  json?: boolean;
  image?: string;
  backend?: BackendName;
  dataDir?: string;
  timeout: string;
}

/** A report file's folder must exist before anything starts (a run must not end with its report lost). */
function reportPath(option: string, file: string): string {
  const path = resolve(file);
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`${option} ${file}: no folder ${dir}`);
  if (existsSync(path) && statSync(path).isDirectory()) throw new UsageError(`${option} ${file}: is a folder`);
  return path;
}

export function registerTestCommand(program: Command): void {
  example(
    program
      .command('test')
      .description(
        'run a scenario: bring its lab up if it is not, run its steps in order (exec, background, wait, expect-udp/-tcp, flush, check, link) and judge each; exit 0 all passed, 1 a step failed, 2 a bad scenario',
      )
      .argument('<scenario>', 'scenario file (YAML; see README "Scenarios (labctl test)")')
      .option('--keep', 'leave the lab up at the end (when the scenario brought it up)')
      .option('--junit <file>', 'write JUnit XML there: one test case per step, failures with what was expected and what happened')
      .option('--json', 'print the run as one JSON document instead of the progress list and summary')
      .option('--image <name>', "image the lab's machines boot (default: the lab's `image:`, else bookworm)")
      .addOption(new Option('--backend <backend>', 'machine backend (default: systemd where systemd is PID 1, else direct)').choices(['systemd', 'direct']))
      .addOption(new Option('--data-dir <dir>', 'where images live (default $LABCTL_DATA_DIR or /var/lib/labctl)'))
      .option('--timeout <seconds>', 'how long each machine may take to boot', '60')
      .action(
        action(async (file: string, opts: TestCliOptions) => {
          const { loadScenario } = await import('../scenario/load.js');
          const scenario = loadScenario(file);
          const junit = opts.junit !== undefined ? reportPath('--junit', opts.junit) : undefined;
          const timeout = Number(opts.timeout);
          if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--timeout must be a number of seconds, not "${opts.timeout}"`);
          requireRoot('test', "it brings the lab up and runs commands in the lab's namespaces and machines");
          const { runScenario } = await import('../scenario/run.js');
          const run = await runScenario(scenario, {
            ...(opts.keep ? { keep: true } : {}),
            ...(opts.backend ? { backend: opts.backend } : {}),
            ...(opts.image ? { image: opts.image } : {}),
            ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
            readyTimeoutMs: timeout * 1000,
            renderer: opts.json ? 'silent' : process.stdout.isTTY ? 'default' : 'simple',
            say: opts.json ? () => {} : (line) => process.stdout.write(`${line}\n`),
          });
          const written: string[] = [];
          if (junit) {
            const { junitXml } = await import('../scenario/junit.js');
            writeFileSync(junit, junitXml(run));
            written.push(`JUnit: ${junit}`);
          }
          if (opts.json) printJson(run);
          else {
            const { formatSummary } = await import('../scenario/report.js');
            process.stdout.write(formatSummary(run, written));
          }
          if (run.setupError !== undefined) process.stderr.write(`labctl: ${run.setupError}\n`);
          return run.exitCode;
        }),
      ),
    'sudo labctl test machines/article.test.yaml',
    'sudo labctl test my.test.yaml --junit report.xml --keep',
  );
}
