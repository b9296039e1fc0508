// The image recipe's JSON Schema (schema/recipe.schema.json), made from its zod schema
// (recipe.ts) by scripts/gen-schema.ts at every build. See util/json-schema.ts for how and why.
import { editorJsonSchema, type JsonSchema, type Refinement } from '../util/json-schema.js';
import { recipeSchema } from './recipe.js';

const GiB = 1024 ** 3;

const RECIPE_REFINEMENTS: Refinement[] = [
  {
    what: 'mirror URL',
    accepts: ['http://deb.debian.org/debian', 'https://mirror.example/debian', 'file:///srv/mirror'],
    rejects: ['ftp://mirror.example/debian', 'deb.debian.org/debian'],
    describe: (generated) => ({
      ...generated,
      // The scheme; that the rest parses as a URL, labctl checks when it loads the recipe.
      pattern: '^(?:[hH][tT][tT][pP][sS]?|[fF][iI][lL][eE]):\\S',
      patternErrorMessage: 'an http://, https:// or file:// URL',
    }),
  },
  {
    what: 'path inside the image',
    accepts: ['/etc/motd', '/usr/local/bin/x'],
    rejects: ['etc/motd', '/', '/etc/../root/x', '/etc/..'],
    describe: (generated) => ({
      ...generated,
      // Absolute, not "/" alone, and no segment that is "..".
      pattern: '^/(?!(?:.*/)?\\.\\.(?:/|$)).+$',
      patternErrorMessage: 'an absolute path inside the image, without ..',
    }),
  },
  {
    what: 'absolute path on the host',
    accepts: ['/usr/share/keyrings/debian-archive-keyring.gpg', '/'],
    rejects: ['keyring.gpg', './keyring.gpg'],
    describe: (generated) => ({ ...generated, pattern: '^/', patternErrorMessage: 'an absolute path' }),
  },
  {
    what: 'image size',
    accepts: ['2G', '1536M', '2GiB', '512M', 2 * GiB],
    rejects: ['1M', '2T', 'big', 1000, 2.5],
    // A string's range (512M to 1T) is beyond a pattern; labctl checks it when it loads the recipe.
    describe: () => ({
      anyOf: [
        { type: 'string', pattern: '^\\s*[0-9]+(?:\\.[0-9]+)?\\s*[KMGTkmgt]?(?:[iI]?[bB])?\\s*$' },
        { type: 'integer', minimum: 512 * 1024 ** 2, maximum: 1024 ** 4 },
      ],
    }),
  },
  {
    what: 'file with either content or source',
    accepts: [
      { path: '/etc/motd', content: 'hello\n' },
      { path: '/etc/motd', source: 'motd' },
    ],
    rejects: [{ path: '/etc/motd' }, { path: '/etc/motd', content: 'hello\n', source: 'motd' }],
    describe: (generated) => ({ ...generated, oneOf: [{ required: ['content'] }, { required: ['source'] }] }),
  },
];

/** Hover text; images/README.md says more. */
const RECIPE_DESCRIPTIONS: Record<string, string> = {
  name: 'Image name (default: the file name without .yaml).',
  description: 'Free text, shown by `labctl image list`.',
  distribution: 'debian or ubuntu.',
  suite: 'Code name of a suite of that distribution (bookworm, trixie, jammy, noble, ...).',
  mirror: 'Archive URL (http://, https://, file://); `--mirror URL` replaces it.',
  components: 'Archive components (default main; Ubuntu main, universe).',
  keyring: "Keyring that checks the archive's signatures (default: the distribution's); copied into the image.",
  architecture: "Must be the host's.",
  variant: 'debootstrap variant.',
  packages: 'Packages to include; labctl always adds what the lab needs (systemd, dbus, iproute2, nftables, ...).',
  size: 'Size of the sparse image file: 2G, 1536M, or a number of bytes; at least 512M, at most 1T.',
  files: 'Files to add: {path, content} or {path, source} (a file beside the recipe), optional mode.',
  'files[].path': 'Absolute path inside the image.',
  'files[].content': 'The text of the file.',
  'files[].source': 'A file on the host, relative to the recipe.',
  'files[].mode': 'Octal mode, as a string: "0644".',
  commands: 'Run inside the image after the packages: a string runs with /bin/sh -c, a list is an argument list.',
  mask: 'systemd units masked in the image: what a lab machine never needs costs boot time.',
  'mask-generators': 'systemd generators disabled in the image.',
  'root-password-file': "A file holding root's password (first line); a literal password in a recipe is refused.",
};

export function recipeJsonSchema(): JsonSchema {
  return editorJsonSchema(recipeSchema, {
    title: 'labctl image recipe',
    description: 'An image for lab machines, built by `labctl image build`. Generated from src/image/recipe.ts by scripts/gen-schema.ts.',
    refinements: RECIPE_REFINEMENTS,
    descriptions: RECIPE_DESCRIPTIONS,
  });
}
