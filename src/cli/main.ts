// labctl's command line. Each command group registers itself from its own module.
import { Command, type CommanderError } from 'commander';
import { registerNetCommands } from './net.js';
import { registerLinkCommands } from './link.js';
import { registerNatCommands } from './nat.js';
import { registerMachineCommands } from './machines.js';
import { registerLogsCommand } from './logs.js';
import { registerConntrackCommand } from './conntrack.js';
import { registerCaptureCommand } from './capture.js';
import { registerCheckCommands } from './check.js';
import { registerProbeCommands } from './probe.js';
import { registerGraphCommand } from './graph.js';
import { registerDoctorCommand } from './doctor.js';
import { registerCompletionCommands } from './completion.js';
import { registerTestCommand } from './test.js';
import { EXIT_BAD_INPUT } from '../util/errors.js';

const program = new Command();
program
  .name('labctl')
  .description('Build a multi-network NAT lab on one Linux host: network namespaces, NAT routers that behave as declared, and systemd-nspawn machines')
  .version('0.1.0')
  .showHelpAfterError()
  .enablePositionalOptions()
  .exitOverride((err: CommanderError) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT_BAD_INPUT);
  })
  .addHelpText(
    'after',
    `
Examples:
  $ sudo labctl image build noble      # the image the article's lab boots (Ubuntu 24.04)
  $ sudo labctl up                     # the article's lab (machines/article.yaml), machines booted
  $ sudo labctl shell c1-nat
  $ sudo labctl down
  $ sudo labctl net up                 # the lab network alone
  $ sudo labctl net status
  $ labctl net rules c1-nat            # the nftables ruleset of a NAT router
  $ sudo labctl net down
`,
  );
registerMachineCommands(program);
registerLogsCommand(program);
registerNetCommands(program);
registerLinkCommands(program);
registerNatCommands(program);
registerConntrackCommand(program);
registerCaptureCommand(program);
registerCheckCommands(program);
registerProbeCommands(program);
registerGraphCommand(program);
registerDoctorCommand(program);
registerCompletionCommands(program);
registerTestCommand(program);
// The image commands pull in the image builder (listr2 and more); load them only when
// asked for, so that `net up` and friends start fast. (No top-level await anywhere: the
// bundle is CommonJS, which V8 can cache compiled; see bin/labctl.js.)
async function main(): Promise<void> {
  const first = process.argv.slice(2).find((a) => !a.startsWith('-'));
  // (`completion` too: its script lists every command.)
  if (first === undefined || first === 'image' || first === 'help' || first === 'completion') {
    const { registerImageCommands } = await import('./image.js');
    registerImageCommands(program);
  } else {
    program.command('image').description('build, list, remove, mount and unmount images (see `labctl image --help`)');
  }
  try {
    await program.parseAsync(process.argv);
  } finally {
    const { closeBackends } = await import('../machine/select.js');
    await closeBackends();
  }
}

main().catch((e: unknown) => {
  // parseAsync's actions handle their own errors; this is a bug, so show the stack.
  console.error(e);
  process.exitCode = 1;
});
