// `labctl image build|list|rm|mount|umount`.
// Exit codes: 0 ok, 1 failure (a command failed, image in use), 2 bad input
// (unknown image, invalid recipe, missing keyring, bad option), 130 interrupted.
import { type Command, Option } from 'commander';
import { buildImage, listImages, listRecipeNames, mountImage, removeImage, umountImage, type ImageInfo } from '../image/index.js';
import { formatBytes } from '../image/bytes.js';
import { DEFAULT_DATA_DIR } from '../host/dirs.js';
import { table } from '../report/table.js';
import { action } from './common.js';

interface CommonOptions {
  dataDir?: string;
  json?: boolean;
}

function dataDirOf(cmd: Command): string | undefined {
  const opts = cmd.optsWithGlobals<CommonOptions>();
  return opts.dataDir;
}

const dataDirOption = () => new Option('--data-dir <dir>', `where images, mounts and caches live (default $LABCTL_DATA_DIR or ${DEFAULT_DATA_DIR})`);

function formatList(images: ImageInfo[]): string {
  if (!images.length) return 'No images. Build one with: labctl image build bookworm';
  const rows: string[][] = [];
  for (const i of images) {
    rows.push([
      i.name + (i.state === 'broken' ? ' (broken)' : '') + (i.building ? (i.state === 'ready' ? ' (rebuilding)' : ' (building)') : ''),
      i.suite ? `${i.distribution ?? ''} ${i.suite}`.trim() : '-',
      `${formatBytes(i.sizeOnDisk)} / ${formatBytes(i.sizeBytes)}`,
      i.created ? i.created.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-',
      i.mounted ? 'yes' : 'no',
      i.inUseBy.length ? i.inUseBy.join(', ') : '-',
    ]);
  }
  const broken = images.filter((i) => i.state === 'broken').map((i) => `${i.name}: ${i.reason}`);
  return table(['NAME', 'SUITE', 'SIZE ON DISK', 'CREATED', 'MOUNTED', 'IN USE BY'], rows).trimEnd() + (broken.length ? `\n\n${broken.join('\n')}` : '');
}

export function registerImageCommands(program: Command): void {
  const image = program
    .command('image')
    .description('build and manage machine images (read-only btrfs subvolumes that machines boot with systemd-nspawn --ephemeral)');
  image.addHelpText(
    'after',
    `
Images are built from recipes (images/NAME.yaml, or any recipe file): a sparse btrfs
image file DATA/images/NAME.btrfs, loop-mounted at DATA/mnt/NAME, holding the read-only
subvolume DATA/mnt/NAME/rootfs. DATA is --data-dir, $LABCTL_DATA_DIR or ${DEFAULT_DATA_DIR}.
Shipped recipes: ${listRecipeNames().join(', ') || 'none'}.

Examples:
  labctl image build bookworm
  labctl image list
  labctl image mount bookworm      # after a reboot (labctl up mounts on demand)
  labctl image rm bookworm`,
  );

  image
    .command('build')
    .description('build an image from a recipe: sparse file, mkfs.btrfs, loop mount, debootstrap into a subvolume, make it read-only')
    .argument('<name|file>', 'a shipped recipe name (images/NAME.yaml) or the path of a recipe file')
    .option('--mirror <url>', "use this archive mirror instead of the recipe's")
    .addOption(dataDirOption())
    .option('--cache-dir <dir>', 'where the download and base caches live (default DATA/cache)')
    .option('--name <name>', 'store the image under this name (default: the recipe name)')
    .option('--no-cache', 'rebuild from nothing: ignore the cached base and downloaded packages (the cache is refreshed)')
    .option(
      '--insecure-no-verify',
      "INSECURE: do not check the archive's signatures (debootstrap --no-check-gpg); anyone between you and the mirror can then put anything in the image",
    )
    .option('--verbose', 'stream the output of every command')
    .option('--json', 'print the result as JSON on stdout (no progress display)')
    .addHelpText(
      'after',
      `
The new image is built beside the old one (NAME.btrfs.new) and swapped in only when
complete; an interrupted or failed build (Ctrl-C, bad mirror, full disk) leaves no mount,
no loop device and no partial image. A rebuild reuses the cached base: as it is (same
package list), or completed with apt-get install (packages added to a cached base's list);
otherwise debootstrap runs again from the downloaded packages.

Examples:
  labctl image build bookworm
  labctl image build bookworm --mirror http://deb.debian.org/debian --verbose
  labctl image build ./my-recipe.yaml --name lab-router --json
  labctl image build noble            # needs /usr/share/keyrings/ubuntu-archive-keyring.gpg (if missing, the error says where to get it here)`,
    )
    .action(
      action(
        async (
          target: string,
          opts: { mirror?: string; cacheDir?: string; name?: string; cache: boolean; insecureNoVerify?: boolean; verbose?: boolean; json?: boolean },
          cmd: Command,
        ) => {
          const dataDir = dataDirOf(cmd);
          // Also with --json: the warning goes to stderr and leaves the JSON on stdout intact.
          if (opts.insecureNoVerify) {
            process.stderr.write('labctl image build: warning: --insecure-no-verify: archive signatures are NOT checked\n');
          }
          const result = await buildImage(target, {
            ...(dataDir ? { dataDir } : {}),
            ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
            ...(opts.mirror ? { mirror: opts.mirror } : {}),
            ...(opts.name ? { name: opts.name } : {}),
            cache: opts.cache,
            verify: !opts.insecureNoVerify,
            verbose: Boolean(opts.verbose),
            renderer: opts.json ? 'silent' : opts.verbose ? 'simple' : 'default',
            handleSignals: true,
            ...(opts.json ? { log: (line: string) => process.stderr.write(`${line}\n`) } : {}),
          });
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
          } else {
            process.stdout.write(
              `Built image ${result.name} (${result.meta.distribution} ${result.meta.suite}) in ${result.seconds.toFixed(1)} s, ` +
                `base ${result.baseFromCache ? 'from the cache' : result.baseExtendedWith ? `from the cache + apt-get install ${result.baseExtendedWith.join(' ')}` : 'bootstrapped'}: ${result.imageFile}\n`,
            );
          }
        },
      ),
    );

  image
    .command('list')
    .description('list images: name, suite, size on disk, created, mounted, machines using it')
    .addOption(dataDirOption())
    .option('--json', 'print the list as JSON')
    .addHelpText('after', '\nExamples:\n  labctl image list\n  labctl image list --json --data-dir /var/tmp/labctl-test-data')
    .action(
      action(async (opts: CommonOptions, cmd: Command) => {
        const dataDir = dataDirOf(cmd);
        const images = await listImages(dataDir ? { dataDir } : {});
        process.stdout.write(`${opts.json ? JSON.stringify(images, null, 2) : formatList(images)}\n`);
      }),
    );

  image
    .command('rm')
    .description('remove an image (refused while a machine uses it)')
    .argument('<name>', 'image name')
    .addOption(dataDirOption())
    .option('--json', 'print what was removed as JSON')
    .addHelpText('after', '\nThe download and base caches are kept (they live in DATA/cache).\n\nExamples:\n  labctl image rm bookworm')
    .action(
      action(async (name: string, opts: CommonOptions, cmd: Command) => {
        const dataDir = dataDirOf(cmd);
        const r = await removeImage(name, dataDir ? { dataDir } : {});
        process.stdout.write(opts.json ? `${JSON.stringify({ name, ...r })}\n` : `Removed image ${name}\n`);
      }),
    );

  image
    .command('mount')
    .description('loop-mount an image (after a reboot); prints the read-only rootfs directory')
    .argument('<name>', 'image name')
    .addOption(dataDirOption())
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  labctl image mount bookworm\n  systemd-nspawn --register=no --keep-unit --ephemeral -D "$(labctl image mount bookworm)" /bin/true',
    )
    .action(
      action(async (name: string, opts: CommonOptions, cmd: Command) => {
        const dataDir = dataDirOf(cmd);
        const r = await mountImage(name, dataDir ? { dataDir } : {});
        process.stdout.write(opts.json ? `${JSON.stringify({ name, ...r })}\n` : `${r.path}\n`);
      }),
    );

  image
    .command('umount')
    .alias('unmount')
    .description('unmount an image and free its loop device (refused while a machine uses it)')
    .argument('<name>', 'image name')
    .addOption(dataDirOption())
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExamples:\n  labctl image umount bookworm')
    .action(
      action(async (name: string, opts: CommonOptions, cmd: Command) => {
        const dataDir = dataDirOf(cmd);
        const r = await umountImage(name, dataDir ? { dataDir } : {});
        process.stdout.write(opts.json ? `${JSON.stringify({ name, ...r })}\n` : r.unmounted ? `Unmounted image ${name}\n` : `Image ${name} was not mounted\n`);
      }),
    );
}
