// labctl's command line. Each command group registers itself from its own module.
import { Command, CommanderError } from 'commander';
import { registerNetCommands } from './net.js';
import { EXIT_BAD_INPUT } from './common.js';

const program = new Command();
program
  .name('labctl')
  .description('Build a multi-network NAT lab on one Linux host: network namespaces, NAT routers that behave as declared, and systemd-nspawn machines')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride((err: CommanderError) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT_BAD_INPUT);
  })
  .addHelpText(
    'after',
    `
Examples:
  $ sudo labctl net up                 # the article's lab network (machines/article.yaml)
  $ sudo labctl net status
  $ labctl net rules c1-nat            # the nftables ruleset of a NAT router
  $ sudo labctl net down
`,
  );
registerNetCommands(program);

await program.parseAsync(process.argv);
