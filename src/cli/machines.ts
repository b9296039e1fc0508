// `labctl up|down|status|shell|exec`: the lab with its machines.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { action, example, printJson, requireRoot } from './common.js';
import { UsageError } from '../util/errors.js';
import { loadLab } from '../lab/load.js';
import type { Lab } from '../lab/model.js';
import { signalTree } from '../machine/proc.js';
import type { BackendName } from '../machine/backend.js';

const backendOption = () =>
  new Option('--backend <backend>', 'machine backend (default: systemd where systemd is PID 1, else direct)').choices(['systemd', 'direct']);
const dataDirOption = () => new Option('--data-dir <dir>', 'where images live (default $LABCTL_DATA_DIR or /var/lib/labctl)');

/** Finds a running machine by name in any lab's state. */
export async function findMachine(name: string) {
  const { allStates } = await import('../host/state.js');
  for (const s of allStates()) {
    const m = s.machines?.find((x) => x.name === name);
    if (m) return m;
  }
  const names = allStates().flatMap((s) => (s.machines ?? []).map((m) => m.name));
  throw new UsageError(`no running machine "${name}"${names.length ? ` (running: ${names.join(', ')})` : '; bring a lab up with `labctl up`'}`);
}

/** A bare name (no path, no .yaml), as `labctl down NAME` takes a lab that is up. */
const looksLikeLabName = (arg: string) => !arg.includes('/') && !/\.ya?ml$/.test(arg);

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

/**
 * Runs argv with the terminal passed through. A signal sent to labctl (kill, a test
 * harness, a closed terminal) is passed on to the whole command tree inside the machine,
 * so nothing keeps running there after labctl is gone.
 */
export function passThrough(argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals) => {
      if (child.pid) signalTree(child.pid, signal);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const s of signals) process.on(s, forward);
    child.on('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      resolve(code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 1) : 1));
    });
    child.on('error', (e) => {
      process.stderr.write(`labctl: ${argv[0]}: ${e.message}\n`);
      resolve(127);
    });
  });
}

/** The status a shell wrapper wrote (then removes the file); `fallback` when it wrote none (killed, hung up). */
function readShellStatus(file: string, fallback: number): number {
  try {
    const status = Number(readFileSync(file, 'utf8').trim());
    rmSync(file, { force: true });
    return Number.isInteger(status) && status >= 0 && status <= 255 ? status : fallback;
  } catch {
    return fallback;
  }
}

export function registerMachineCommands(program: Command): void {
  example(
    program
      .command('up')
      .description('bring a lab up: its network, its image, and one booted ephemeral machine per lab member marked as a machine')
      .argument('[file]', 'lab file, or the name of a built-in lab', 'article')
      .addOption(backendOption())
      .option('--image <name>', "image to boot instead of the lab's `image:` (default bookworm); a machine's own `image:` still wins")
      .addOption(dataDirOption())
      .option('--timeout <seconds>', 'how long each machine may take to boot', '60')
      .option('--json', 'print the result as JSON')
      .action(
        action(async (file: string, opts: { backend?: BackendName; image?: string; dataDir?: string; timeout: string; json?: boolean }) => {
          const lab = loadLab(file);
          requireRoot('up', 'it creates network namespaces and boots machines');
          const timeout = Number(opts.timeout);
          if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--timeout must be a number of seconds, not "${opts.timeout}"`);
          // Before the image is mounted: a lab whose links need netem stops here on a kernel without it.
          const { labNetemNeeds, requireNetem } = await import('../apply/links.js');
          await requireNetem(`cannot bring lab "${lab.name}" up`, labNetemNeeds(lab));
          const { labUp } = await import('../apply/lab.js');
          const result = await labUp(lab, {
            ...(opts.backend ? { backend: opts.backend } : {}),
            ...(opts.image ? { image: opts.image } : {}),
            ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
            readyTimeoutMs: timeout * 1000,
            ...(opts.json ? { renderer: 'silent' as const } : {}),
          });
          if (opts.json) printJson(result);
          else process.stdout.write(`${result.message}\n`);
        }),
      ),
    'sudo labctl up',
    'sudo labctl up machines/article.yaml --image bookworm --backend direct',
  );
  example(
    program
      .command('down')
      .description("stop the lab's machines, remove its network, and leave nothing behind")
      .argument('[file]', 'lab file, built-in lab, or the name of a lab that is up', 'article')
      .option('--force', "also delete namespaces with this lab's names that no state file records")
      .option('--json', 'print the result as JSON')
      .action(
        action(async (file: string, opts: { force?: boolean; json?: boolean }) => {
          requireRoot('down', 'it stops machines and deletes network namespaces');
          const { readState } = await import('../host/state.js');
          const { labDown } = await import('../apply/lab.js');
          let lab: Lab | undefined;
          let name = file;
          const state = readState(file);
          if (!state) {
            try {
              lab = loadLab(file);
            } catch (e) {
              // Neither a lab that is up nor a lab file: say what is up instead of "no such file".
              if (!(e instanceof UsageError) || !looksLikeLabName(file)) throw e;
              const { allStates } = await import('../host/state.js');
              const up = allStates().map((s) => s.lab);
              throw new UsageError(
                `lab "${file}" is not up${up.length ? ` (up: ${up.join(', ')})` : ' (no lab is up)'}, and there is no lab file of that name`,
              );
            }
            name = lab.name;
          } else {
            // Known by name: its plan comes from the file it was brought up from, so that
            // machines a crash left unrecorded are found too.
            try {
              lab = loadLab(state.source);
            } catch {
              /* the file is gone: the state alone says what to remove */
            }
          }
          const result = await labDown(name, { ...(lab ? { lab } : {}), ...(opts.force ? { force: true } : {}) });
          if (opts.json) printJson(result);
          else process.stdout.write(`${result.message}\n`);
        }),
      ),
    'sudo labctl down',
  );
  example(
    program
      .command('status')
      .description('one row per machine: state, namespace, addresses, image, NAT mode, uptime, backend')
      .argument('[lab]', 'only this lab (default: every lab that is up)')
      .option('--json', 'print as JSON')
      .action(
        action(async (labName: string | undefined, opts: { json?: boolean }) => {
          const { labsStatus, formatLabsStatus } = await import('../report/status.js');
          const labs = await labsStatus(labName);
          if (opts.json) printJson(labs);
          else process.stdout.write(formatLabsStatus(labs));
        }),
      ),
    'sudo labctl status',
    'sudo labctl status article --json',
  );
  example(
    program
      .command('shell')
      .description('open an interactive login shell in a machine (machinectl shell, or nsenter with the direct backend)')
      .argument('<machine>', 'machine name, e.g. c1-nat')
      .action(
        action(async (name: string) => {
          requireRoot('shell', "it enters a machine's namespaces");
          const m = await findMachine(name);
          const { backendFor } = await import('../machine/select.js');
          const shell = await (await backendFor(m.backend)).shellCommand(m);
          const code = await passThrough(shell.argv);
          return shell.statusFile ? readShellStatus(shell.statusFile, code) : code;
        }),
      ),
    'sudo labctl shell c1-nat',
  );
  example(
    program
      .command('exec')
      .description('run a command in a machine; its stdout, stderr and exit code pass through')
      .argument('<machine>', 'machine name')
      .argument('<command...>', 'the command and its arguments (put -- before options)')
      .passThroughOptions()
      .action(
        action(async (name: string, command: string[]) => {
          requireRoot('exec', "it enters a machine's namespaces");
          // `labctl exec c0 -- cmd -x`: the -- only separates labctl's options from the command's.
          if (command[0] === '--') command = command.slice(1);
          if (command.length === 0) throw new UsageError('exec needs a command: labctl exec MACHINE -- COMMAND [ARGS...]');
          const m = await findMachine(name);
          const { backendFor } = await import('../machine/select.js');
          const argv = await (await backendFor(m.backend)).execArgv(m, command);
          return passThrough(argv);
        }),
      ),
    'sudo labctl exec c1-nat -- conntrack -L',
    'sudo labctl exec c0 -- sh -c "echo abc | nc 100.64.2.100 54321 -u"',
  );
}
