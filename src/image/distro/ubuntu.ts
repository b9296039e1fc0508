import { debianRelease, hostLabel, isDebian, isUbuntuLike } from '../host-os.js';
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
  keyringProvider(keyring, host) {
    const copy =
      `copy ${UBUNTU_KEYRING} from an Ubuntu system, or take it out of an ubuntu-keyring .deb ` +
      `(Ubuntu's or Debian 13's: dpkg-deb -x ubuntu-keyring_VERSION_all.deb DIR puts it at DIR${UBUNTU_KEYRING})`;
    if (!keyring.endsWith('/ubuntu-archive-keyring.gpg')) {
      return `No package labctl knows installs a file of that name; put the Ubuntu archive keyring there: ${copy}`;
    }
    const thisHost = `This host is ${hostLabel(host)}`;
    const install = `${thisHost}: the package ubuntu-keyring provides ${UBUNTU_KEYRING} (apt-get install ubuntu-keyring)`;
    if (isUbuntuLike(host)) return install;
    if (isDebian(host)) {
      // Debian packages ubuntu-keyring from 13 (trixie) on, testing and unstable included;
      // Debian 12 only in bookworm-backports; older releases not at all.
      const release = debianRelease(host);
      if (release === undefined || release >= 13) return install;
      if (release === 12) {
        return (
          `${thisHost}: Debian 12's archive (main, updates, security) has no package for it, but bookworm-backports has ubuntu-keyring ` +
          `(add "deb http://deb.debian.org/debian bookworm-backports main" to apt's sources, then apt-get install -t bookworm-backports ubuntu-keyring); or ${copy}`
        );
      }
      return `${thisHost}: Debian ${release} does not package it; ${copy}`;
    }
    return `${thisHost}, where labctl knows no package for it; ${copy}`;
  },
  // gutsy is the generic Ubuntu script (every later suite is a symlink to it);
  // passing it explicitly builds suites the host's debootstrap has never heard of
  // (Debian 12's debootstrap 1.0.128 has no "noble").
  debootstrapScript: '/usr/share/debootstrap/scripts/gutsy',
  debootstrapArgs(recipe) {
    // Every suite since hirsute is merged-/usr; say it so an old gutsy script cannot guess wrong.
    // A suite labctl does not list is taken for a newer release, so it is merged too.
    return ['focal'].includes(recipe.suite) ? [] : ['--merged-usr'];
  },
  sourcesList(recipe, signedBy) {
    const comps = recipe.components.join(' ');
    const deb = `deb${signedBy ? ` [signed-by=${signedBy}]` : ''} ${recipe.mirror}`;
    return `${[`${deb} ${recipe.suite} ${comps}`, `${deb} ${recipe.suite}-updates ${comps}`].join('\n')}\n`;
  },
};
