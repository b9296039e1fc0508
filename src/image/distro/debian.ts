import type { Distribution } from './types.js';

const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export const debian: Distribution = {
  id: 'debian',
  label: 'Debian',
  suites: ['buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'sid', 'oldoldstable', 'oldstable', 'stable', 'testing', 'unstable'],
  defaultMirror: 'http://deb.debian.org/debian',
  defaultComponents: ['main'],
  defaultKeyring: DEBIAN_KEYRING,
  keyringProvider(keyring) {
    if (keyring.startsWith('/usr/share/keyrings/debian-archive')) {
      return 'it is provided by the package debian-archive-keyring (apt-get install debian-archive-keyring)';
    }
    return `it is not a file shipped by a Debian package labctl knows; put the archive key of the mirror at ${keyring}`;
  },
  // "sid" is the generic Debian script (bookworm, trixie... are symlinks to it).
  debootstrapScript: '/usr/share/debootstrap/scripts/sid',
  debootstrapArgs() {
    return [];
  },
  sourcesList(recipe) {
    const comps = recipe.components.join(' ');
    const lines = [`deb ${recipe.mirror} ${recipe.suite} ${comps}`];
    if (!['sid', 'unstable', 'testing'].includes(recipe.suite)) lines.push(`deb ${recipe.mirror} ${recipe.suite}-updates ${comps}`);
    return lines.join('\n') + '\n';
  },
};
