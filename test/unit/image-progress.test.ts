// Build progress with bytes: apt-get's size lines parsed, the bytes debootstrap downloads
// measured from the files it writes, and both shown in the progress text.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AptProgress, parseAptSize } from '../../src/image/apt-progress.js';
import { formatBytes } from '../../src/image/bytes.js';
import { DebootstrapProgress, DownloadMeter } from '../../src/image/debootstrap.js';

describe('apt sizes', () => {
  it('reads apt SI sizes, with or without digit grouping', () => {
    assert.equal(parseAptSize('0 B'), 0);
    assert.equal(parseAptSize('512 B'), 512);
    assert.equal(parseAptSize('305 kB'), 305_000);
    assert.equal(parseAptSize('42.5 kB'), 42_500);
    assert.equal(parseAptSize('12.3 MB'), 12_300_000);
    assert.equal(parseAptSize('8786 kB'), 8_786_000);
    assert.equal(parseAptSize('8,786 kB'), 8_786_000);
    assert.equal(parseAptSize('1,5 MB'), 1_500_000);
    assert.equal(parseAptSize('1.2 GB'), 1_200_000_000);
    assert.equal(parseAptSize('lots'), undefined);
    assert.equal(parseAptSize('12 MiB'), undefined);
  });
});

describe('apt-get install progress', () => {
  it('announces what to download, counts bytes per Get: line, takes the Fetched total, then unpacks', () => {
    const p = new AptProgress();
    const lines = [
      'Reading package lists...',
      'The following NEW packages will be installed:',
      '  file libmagic-mgc libmagic1',
      'Need to get 4500 kB/4800 kB of archives.',
      'After this operation, 9876 kB of additional disk space will be used.',
      'Get:1 http://deb.debian.org/debian bookworm/main amd64 libmagic-mgc amd64 1:5.44-3 [305 kB]',
      'Get:2 http://deb.debian.org/debian bookworm/main amd64 libmagic1 amd64 1:5.44-3 [4153 kB]',
      'Get:3 http://deb.debian.org/debian bookworm/main amd64 file amd64 1:5.44-3 [42.5 kB]',
      'Fetched 4500 kB in 1s (3964 kB/s)',
      'Selecting previously unselected package libmagic-mgc.',
      'Preparing to unpack .../libmagic-mgc_1%3a5.44-3_amd64.deb ...',
      'Unpacking libmagic-mgc (1:5.44-3) ...',
      'Unpacking libmagic1:amd64 (1:5.44-3) ...',
      'Setting up libmagic-mgc (1:5.44-3) ...',
    ];
    const updates = lines.map((l) => p.feed(l));
    assert.equal(updates[0], undefined);
    assert.equal(updates[4], undefined, '"After this operation" is not a download');
    assert.deepEqual(updates[3], { stage: 'download', text: `${formatBytes(4_500_000)} to download (${formatBytes(300_000)} already downloaded)` });
    assert.equal(p.needed, 4_500_000);
    assert.equal(p.total, 4_800_000);
    assert.deepEqual(updates[5], { stage: 'download', text: `downloading libmagic-mgc: ${formatBytes(305_000)} of ${formatBytes(4_500_000)}` });
    // 305 + 4153 + 42.5 kB: more than the 4500 kB announced (apt rounds each size): capped.
    assert.equal(updates[7]?.text, `downloading file: ${formatBytes(4_500_000)} of ${formatBytes(4_500_000)}`);
    assert.equal(updates[8]?.text, `downloaded ${formatBytes(4_500_000)} in 3 file(s)`);
    assert.equal(p.fetched, 4_500_000);
    assert.deepEqual(updates[11], { stage: 'unpack', text: 'unpacking 1: libmagic-mgc' });
    assert.equal(updates[12]?.text, 'unpacking 2: libmagic1:amd64');
    assert.deepEqual(updates[13], { stage: 'configure', text: 'setting up 1: libmagic-mgc' });
    assert.equal(p.unpacked, 2);
  });

  it('everything already downloaded: "Need to get 0 B/..."', () => {
    const p = new AptProgress();
    assert.equal(p.feed('Need to get 0 B/4153 kB of archives.')?.text, `nothing to download (${formatBytes(4_153_000)} already downloaded)`);
    assert.equal(p.needed, 0);
  });

  it('apt-get update: index files, with a grouped size', () => {
    const p = new AptProgress();
    assert.equal(p.feed('Hit:1 http://deb.debian.org/debian bookworm InRelease'), undefined);
    assert.equal(p.feed('Get:2 http://deb.debian.org/debian bookworm-updates InRelease [55.4 kB]')?.text, `downloading InRelease: ${formatBytes(55_400)}`);
    assert.equal(p.feed('Get:3 http://deb.debian.org/debian bookworm/main amd64 Packages [8,786 kB]')?.text, `downloading Packages: ${formatBytes(8_841_400)}`);
    assert.equal(p.feed('Fetched 8,841 kB in 2s (4,123 kB/s)')?.text, `downloaded ${formatBytes(8_841_000)} in 2 file(s)`);
  });
});

describe('debootstrap download bytes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-meter-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('counts the .deb files that appear after start(), not those already cached', async () => {
    const cache = join(dir, 'cache');
    mkdirSync(cache);
    writeFileSync(join(cache, 'cached_1_amd64.deb'), Buffer.alloc(5000));
    const meter = new DownloadMeter([cache]);
    await meter.start();
    assert.equal(await meter.poll(), false);
    assert.equal(meter.bytes, 0);
    writeFileSync(join(cache, 'new_1_amd64.deb'), Buffer.alloc(1200));
    writeFileSync(join(cache, 'notes.txt'), 'not a package');
    assert.equal(await meter.poll(), true);
    assert.equal(meter.bytes, 1200);
    writeFileSync(join(cache, 'new_1_amd64.deb'), Buffer.alloc(3000)); // still downloading: it grows
    assert.equal(await meter.poll(), true);
    assert.equal(meter.bytes, 3000);
  });

  it('follows files from partial/ into archives/, and a directory that appears later', async () => {
    const archives = join(dir, 'rootfs', 'var/cache/apt/archives');
    const partial = join(archives, 'partial');
    const meter = new DownloadMeter([archives, partial]);
    await meter.start(); // neither exists yet: debootstrap makes them
    mkdirSync(partial, { recursive: true });
    writeFileSync(join(partial, 'libc6_2.36_amd64.deb'), Buffer.alloc(700));
    await meter.poll();
    assert.equal(meter.bytes, 700);
    renameSync(join(partial, 'libc6_2.36_amd64.deb'), join(archives, 'libc6_2.36_amd64.deb'));
    writeFileSync(join(partial, 'zlib1g_1.2_amd64.deb'), Buffer.alloc(300));
    await meter.poll();
    assert.equal(meter.bytes, 1000);
    // Concurrent polls share one measurement.
    const [a, b] = [meter.poll(), meter.poll()];
    assert.equal(a, b);
    await a;
  });

  it('the download stage shows the bytes next to the package counts', () => {
    let bytes = 0;
    const p = new DebootstrapProgress(() => bytes);
    assert.equal(p.downloadText(), undefined, 'nothing before the download stage');
    assert.equal(p.feed('I: Retrieving adduser 3.134')?.text, 'downloading adduser (1 downloaded)', 'no bytes measured yet');
    bytes = 3 * 1024 ** 2;
    assert.equal(p.downloadText(), 'downloading adduser (1 downloaded, 3.0 MiB)', 'the same line again with the new count');
    assert.equal(p.feed('I: Validating adduser 3.134')?.text, 'package 1: adduser (downloaded; 1 downloaded, 3.0 MiB; 0 from cache)');
    assert.equal(p.feed('I: Validating apt 2.6.1')?.text, 'package 2: apt (cached; 1 downloaded, 3.0 MiB; 1 from cache)');
    p.feed('I: Extracting adduser...');
    assert.equal(p.stage, 'extract');
  });
});
