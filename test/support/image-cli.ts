// A stand-alone `labctl` with only the image commands, for tests that spawn the
// CLI (e.g. to interrupt a build with SIGINT):
//   node --import tsx test/support/image-cli.ts image build bookworm ...
// bin/labctl.js (src/cli/main.ts) registers the same commands.
import { Command } from 'commander';
import { registerImageCommands } from '../../src/cli/image.js';

const program = new Command('labctl').option('--data-dir <dir>', 'data directory (default $LABCTL_DATA_DIR or /var/lib/labctl)');
program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
registerImageCommands(program);
await program.parseAsync(process.argv);
