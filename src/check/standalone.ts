// `labctl check` on its own, for running it before src/cli/main.ts registers it (and for
// the tests and bench, which prefer `labctl check` when it is registered).
import { Command, type CommanderError } from 'commander';
import { registerCheckCommands } from '../cli/check.js';

const program = new Command();
program
  .name('labctl')
  .showHelpAfterError()
  .exitOverride((err: CommanderError) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });
registerCheckCommands(program);
await program.parseAsync(process.argv);
