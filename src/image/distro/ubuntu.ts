import type { Distribution } from './types.js';

const UBUNTU_KEYRING = '/usr/share/keyrings/ubuntu-archive-keyring.gpg';

export const ubuntu: Distribution = {
  id: 'ubuntu',
  label: 'Ubuntu',
  suites: ['focal', 'jammy', 'kinetic', 'lunar', 'mantic', 'noble', 'oracular', 'plucky', 'questing'],
  defaultMirror: 'http://archive.ubuntu.com/ubuntu',
  // socat, tcpdump and friends are in main today, universe keeps extra packages possible.
  defaultComponents: ['main', 'universe'],
  defaultKeyring: UBUNTU_KEYRING,
  keyringProvider(keyring) {
    if (keyring.endsWith('/ubuntu-archive-keyring.gpg')) {
      return (
        'it is provided by the package ubuntu-keyring (Debian and Ubuntu: apt-get install ubuntu-keyring; ' +
        'some releases call it ubuntu-archive-keyring), or copy ubuntu-archive-keyring.gpg from an Ubuntu system to ' +
        `${keyring}`
      );
    }
    return `it is not a file shipped by a package labctl knows; put the Ubuntu archive key at ${keyring}`;
  },
  // gutsy is the generic Ubuntu script (every later suite is a symlink to it);
  // passing it explicitly builds suites the host's debootstrap has never heard of
  // (Debian 12's debootstrap 1.0.128 has no "noble").
  debootstrapScript: '/usr/share/debootstrap/scripts/gutsy',
  debootstrapArgs(recipe) {
    // Every suite since hirsute is merged-/usr; say it so an old gutsy script cannot guess wrong.
    return ['focal'].includes(recipe.suite) ? [] : ['--merged-usr'];
  },
  sourcesList(recipe) {
    const comps = recipe.components.join(' ');
    return [`deb ${recipe.mirror} ${recipe.suite} ${comps}`, `deb ${recipe.mirror} ${recipe.suite}-updates ${comps}`].join('\n') + '\n';
  },
};
