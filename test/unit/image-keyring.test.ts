// A missing archive keyring: the message says what provides it on the host it runs on
// (Ubuntu and Debian 13 package ubuntu-keyring, Debian 12 only in bookworm-backports, older
// Debian not at all), names the recipe file and its keyring: field, and the real CLI
// (bin/labctl.js) stops with exit 2 before it creates anything.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ubuntu } from '../../src/image/distro/index.js';
import { parseOsRelease, readHostOs, type HostOs } from '../../src/image/host-os.js';
import { loopsUnder, mountsUnder } from '../../src/image/index.js';
import { BIN } from '../support/cli.js';

const UBUNTU_KEYRING = '/usr/share/keyrings/ubuntu-archive-keyring.gpg';

const host = (osRelease: string): HostOs => parseOsRelease(osRelease);
const UBUNTU_2404 = host('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n');
const MINT = host('PRETTY_NAME="Linux Mint 22"\nID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="22"\n');
const DEBIAN_12 = host(
  'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
);
const DEBIAN_13 = host('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nVERSION_CODENAME=trixie\nID=debian\n');
const DEBIAN_SID = host('PRETTY_NAME="Debian GNU/Linux forky/sid"\nNAME="Debian GNU/Linux"\nVERSION_CODENAME=forky\nID=debian\n');
const DEBIAN_11 = host('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nVERSION_ID="11"\nID=debian\n');
const FEDORA = host('NAME="Fedora Linux"\nVERSION_ID=40\nID=fedora\nPRETTY_NAME="Fedora Linux 40 (Workstation Edition)"\n');

describe('os-release', () => {
  it('reads ID, ID_LIKE, VERSION_ID, VERSION_CODENAME and PRETTY_NAME, quoted or not', () => {
    assert.deepEqual(UBUNTU_2404, { id: 'ubuntu', idLike: ['debian'], versionId: '24.04', codename: 'noble', prettyName: 'Ubuntu 24.04.1 LTS' });
    assert.deepEqual(MINT.idLike, ['ubuntu', 'debian']);
    assert.equal(DEBIAN_SID.versionId, undefined);
    assert.equal(host('ID=\'debian\'\nPRETTY_NAME="A \\"quoted\\" name"\n').prettyName, 'A "quoted" name');
    assert.deepEqual(host(''), { id: '', idLike: [] });
  });
});

describe('where the Ubuntu archive keyring comes from, per host', () => {
  const says = (h: HostOs, keyring = UBUNTU_KEYRING) => ubuntu.keyringProvider(keyring, h);

  it('Ubuntu and its derivatives, Debian 13 and later, testing and unstable: the package ubuntu-keyring', () => {
    for (const h of [UBUNTU_2404, MINT, DEBIAN_13, DEBIAN_SID]) {
      assert.match(
        says(h),
        /the package ubuntu-keyring provides \/usr\/share\/keyrings\/ubuntu-archive-keyring\.gpg \(apt-get install ubuntu-keyring\)/,
        JSON.stringify(h),
      );
    }
    assert.match(says(UBUNTU_2404), /^This host is Ubuntu 24\.04\.1 LTS: /);
  });

  it('Debian 12: not in its archive, in bookworm-backports, or a copy of the file', () => {
    const text = says(DEBIAN_12);
    assert.match(text, /^This host is Debian GNU\/Linux 12 \(bookworm\): Debian 12's archive \(main, updates, security\) has no package for it/);
    assert.match(text, /apt-get install -t bookworm-backports ubuntu-keyring/);
    assert.match(text, /copy \/usr\/share\/keyrings\/ubuntu-archive-keyring\.gpg from an Ubuntu system/);
    assert.match(text, /dpkg-deb -x ubuntu-keyring_VERSION_all\.deb DIR/);
    assert.doesNotMatch(text, /provides .*\(apt-get install ubuntu-keyring\)/);
  });

  it('older Debian and other distributions: a copy of the file, no package to install', () => {
    assert.match(says(DEBIAN_11), /Debian 11 does not package it; copy /);
    assert.match(says(FEDORA), /^This host is Fedora Linux 40 \(Workstation Edition\), where labctl knows no package for it; copy /);
    for (const h of [DEBIAN_11, FEDORA]) assert.doesNotMatch(says(h), /apt-get install/);
  });

  it('a keyring file of another name: no package is named', () => {
    assert.match(
      says(UBUNTU_2404, '/etc/labctl/mirror-key.gpg'),
      /^No package labctl knows installs a file of that name; put the Ubuntu archive keyring there: copy /,
    );
  });
});

describe('labctl image build with a missing keyring (bin/labctl.js)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-keyring-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('exits 2 naming the recipe file and keyring:, says what provides it here, and creates nothing', () => {
    const dataDir = join(dir, 'data');
    const keyring = join(dir, 'keys', 'ubuntu-archive-keyring.gpg');
    const recipe = join(dir, 'noble-local.yaml');
    writeFileSync(recipe, `distribution: ubuntu\nsuite: noble\nmirror: http://archive.ubuntu.com/ubuntu\nkeyring: ${keyring}\narchitecture: amd64\nsize: 2G\n`);
    // The sources, through the shipped entry point: a unit run has no fresh bundle to rely on.
    const r = spawnSync(process.execPath, [BIN, 'image', 'build', recipe], {
      encoding: 'utf8',
      env: { ...process.env, LABCTL_DATA_DIR: dataDir, LABCTL_FROM_SOURCE: '1' },
      timeout: 60_000,
    });
    assert.equal(r.status, 2, `${r.stdout}\n${r.stderr}`);
    assert.ok(r.stderr.includes(`labctl: ${recipe}: keyring: ${keyring} does not exist`), r.stderr);
    assert.ok(r.stderr.includes(`${ubuntu.keyringProvider(keyring, readHostOs())}.`), `the text for this host:\n${r.stderr}`);
    assert.ok(r.stderr.includes(`set keyring: in ${recipe} to where it is`), r.stderr);
    assert.match(r.stderr, /--insecure-no-verify skips the signature checks instead, which is insecure/);

    // Nothing: no data dir (so no image file), no mount, no loop device.
    assert.ok(!existsSync(dataDir), `${dataDir} was created`);
    assert.deepEqual(mountsUnder(dataDir), []);
    assert.deepEqual(loopsUnder(dataDir), []);
    assert.ok(!readFileSync('/proc/mounts', 'utf8').includes(dataDir), '/proc/mounts lists the data dir');
    const losetup = spawnSync('losetup', ['--all'], { encoding: 'utf8' });
    if (losetup.status === 0) assert.ok(!losetup.stdout.includes(dir), `losetup --all: ${losetup.stdout}`);
  });
});
