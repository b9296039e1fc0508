// The lab the machine-software tests bring up on either backend (README "Your software in
// the machines"), written with the host paths it binds and copies into a directory under
// the shared test data dir: a path the systemd host sees too (at the same place).
//   server  boots ALT_IMAGE; a read-only and a read-write bind, a file with content and
//           mode, one copied from the host, env, two services (a TCP echo, and one that
//           writes its argv, with everything a unit file must quote), two commands
//   client  boots the lab's image, with nothing of its own
// checkSoftwareLab() asserts all of that from outside, through `labctl exec` as `run` does it.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ALT_IMAGE, ALT_MARKER } from './alt-image.js';
import { TEST_DATA_DIR } from './test-image.js';

export const SOFTWARE_LAB_DIR = join(TEST_DATA_DIR, 'software-lab');
export const SOFTWARE_LAB = join(SOFTWARE_LAB_DIR, 'lab.yaml');
export const SOFTWARE_MACHINES = ['sw-server', 'sw-client'];
/** The args service's argv after sh -c's script and $0, and what it writes: each word then | (GREETING last). */
// biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${PORT}, which systemd must not expand
const ARGS = ['a b', '${PORT}', '50%', 'q"uote', 'back\\slash', "it's"];
const GREET = '#!/bin/sh\necho "greet: $GREETING" > /run/greeted\n';

/** Writes the lab and the host files it names; `extra`: more YAML under `nodes:` (a machine that fails, ...). */
export function writeSoftwareLab(file = SOFTWARE_LAB, extra = ''): string {
  const dir = join(file, '..');
  mkdirSync(join(dir, 'build'), { recursive: true });
  mkdirSync(join(dir, 'shared'), { recursive: true });
  rmSync(join(dir, 'shared', 'written'), { force: true });
  writeFileSync(join(dir, 'build', 'hello.txt'), 'hello from the build dir\n');
  writeFileSync(join(dir, 'greet.sh'), GREET);
  writeFileSync(
    file,
    `name: software
prefix: sw-
nodes:
  - name: server
    image: ${ALT_IMAGE}
    binds:
      - { from: ./build, to: /opt/app, readonly: true }
      - { from: ${join(dir, 'shared')}, to: /mnt/shared }
    files:
      - { path: /etc/app/greeting, content: "hello from the lab file\\n", mode: "0600" }
      - { path: /usr/local/bin/greet, from: greet.sh, mode: "0755" }
    env: { GREETING: hi there, PORT: 7000 }
    services:
      - name: echo
        command: [socat, "TCP-LISTEN:7000,fork,reuseaddr", "EXEC:cat"]
      - name: args
        command: [/bin/sh, -c, 'printf "%s|" "$@" "$GREETING" > /run/args; echo args-started; exec sleep infinity', sh, ${ARGS.map((a) => JSON.stringify(a)).join(', ')}]
        restart: always
    commands:
      - [sh, -c, 'echo "$GREETING" > /run/command-ran']
      - [greet]
  - name: client
${extra}`,
  );
  return file;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Asserts what the lab file put in the machines. `exec`: `labctl exec MACHINE -- ARGV`; `status`: `labctl status --json`. */
export async function checkSoftwareLab(exec: (machine: string, argv: string[]) => Promise<ExecResult>, statusJson: string): Promise<void> {
  const ok = async (machine: string, argv: string[]) => {
    const r = await exec(machine, argv);
    assert.equal(r.exitCode, 0, `${machine}: ${argv.join(' ')}: ${r.stdout}${r.stderr}`);
    // Without its last newline, whether the runner strips it (execa) or not (run).
    return r.stdout.replace(/\n$/, '');
  };
  // Each machine its image: the marker file only in the server's.
  assert.equal(await ok('sw-server', ['cat', '/etc/labctl-test-image']), ALT_MARKER);
  assert.notEqual((await exec('sw-client', ['test', '-e', '/etc/labctl-test-image'])).exitCode, 0, 'the client boots the lab image');
  const machines = (JSON.parse(statusJson) as { lab: string; machines: { name: string; image: string }[] }[]).find((l) => l.lab === 'software')!.machines;
  assert.deepEqual(Object.fromEntries(machines.map((m) => [m.name, m.image])), { 'sw-server': ALT_IMAGE, 'sw-client': 'bookworm' });

  // Binds: read-only enforced, read-write seen by the host.
  assert.equal(await ok('sw-server', ['cat', '/opt/app/hello.txt']), 'hello from the build dir');
  const write = await exec('sw-server', ['touch', '/opt/app/new']);
  assert.notEqual(write.exitCode, 0);
  assert.match(write.stderr, /Read-only file system/);
  await ok('sw-server', ['sh', '-c', 'echo from-the-machine > /mnt/shared/written']);
  assert.equal(readFileSync(join(SOFTWARE_LAB_DIR, 'shared', 'written'), 'utf8'), 'from-the-machine\n');

  // Files: content, from, mode, in the snapshot (a plain file, not a mount).
  assert.equal(await ok('sw-server', ['stat', '-c', '%a %U %F', '/etc/app/greeting', '/usr/local/bin/greet']), '600 root regular file\n755 root regular file');
  assert.equal(await ok('sw-server', ['cat', '/etc/app/greeting']), 'hello from the lab file');
  assert.equal(await ok('sw-server', ['cat', '/usr/local/bin/greet']), GREET.trimEnd());
  assert.equal(await ok('sw-server', ['findmnt', '-n', '-o', 'TARGET', '--target', '/etc/app/greeting']), '/', 'written into the root, not bound');

  // Env: in exec, not in the other machine.
  assert.equal(await ok('sw-server', ['sh', '-c', 'echo "$GREETING|$PORT"']), 'hi there|7000');
  assert.equal(await ok('sw-client', ['sh', '-c', 'printenv GREETING || echo unset']), 'unset');

  // Services: active units, argv as written, output in the journal, env in their environment.
  assert.equal(await ok('sw-server', ['systemctl', 'is-active', 'echo', 'args']), 'active\nactive');
  assert.equal(await ok('sw-server', ['cat', '/run/args']), `${ARGS.join('|')}|hi there|`);
  assert.match(await ok('sw-server', ['journalctl', '-u', 'args', '--no-pager']), /args-started/);
  assert.match(await ok('sw-server', ['systemctl', 'status', 'echo', '--no-pager']), /labctl service echo \(machine sw-server, lab software\)/);

  // Commands: ran in order, with the env; the second is a file from files:, found in PATH.
  assert.equal(await ok('sw-server', ['cat', '/run/command-ran']), 'hi there');
  assert.equal(await ok('sw-server', ['cat', '/run/greeted']), 'greet: hi there');

  // The echo service answers the other machine across the lab's network (started after it was up).
  const server = machines.find((m) => m.name === 'sw-server') as unknown as { addresses: string[] };
  const address = server.addresses.find((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a));
  assert.ok(address, JSON.stringify(server));
  assert.equal(await ok('sw-client', ['sh', '-c', `echo ping-7000 | socat -t 2 - TCP:${address}:7000`]), 'ping-7000');
}

/** A lab whose one machine has a service that exits at once (and a command that would run first). */
export function writeFailingServiceLab(file: string): string {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(
    file,
    `name: swfail
prefix: swf-
nodes:
  - name: box
    services:
      - name: good
        command: [sleep, infinity]
      - name: bad
        command: [/bin/sh, -c, 'echo "bad-service-says-why" >&2; exit 3']
`,
  );
  return file;
}

/** A lab whose one machine has a command that fails. */
export function writeFailingCommandLab(file: string): string {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(
    file,
    `name: swfail
prefix: swf-
nodes:
  - name: box
    commands:
      - [sh, -c, 'echo first-ran']
      - [sh, -c, 'echo "command-output-before-failing"; exit 4']
      - [touch, /run/never]
`,
  );
  return file;
}
