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
      return 'The package debian-archive-keyring provides it (apt-get install debian-archive-keyring)';
    }
    return 'No package labctl knows installs a file of that name; put the archive keyring of the mirror there';
  },
  // "sid" is the generic Debian script (bookworm, trixie... are symlinks to it).
  debootstrapScript: '/usr/share/debootstrap/scripts/sid',
  debootstrapArgs() {
    return [];
  },
  sourcesList(recipe, signedBy) {
    const comps = recipe.components.join(' ');
    const deb = `deb${signedBy ? ` [signed-by=${signedBy}]` : ''} ${recipe.mirror}`;
    const lines = [`${deb} ${recipe.suite} ${comps}`];
    if (!['sid', 'unstable', 'testing'].includes(recipe.suite)) lines.push(`${deb} ${recipe.suite}-updates ${comps}`);
    return `${lines.join('\n')}\n`;
  },
};
