// `labctl test` with machines (the shared bookworm test image, direct backend): the lab is
// booted for the scenario, commands run in the machines, and --keep leaves it up; a second
// run finds it up, uses it as it is and leaves it so; `labctl down` then removes it all.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isRoot, labctl, netnsList, ROOT } from '../support/cli.js';
import { getTestImage } from '../support/test-image.js';

const skip = isRoot ? false : 'needs root';
const PREFIX = 'scm-';
const dir = mkdtempSync(join(tmpdir(), 'labctl-scenario-machines-'));
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));
const nspawns = () => spawnSync('pgrep', ['-af', `systemd-nspawn.*--machine=${PREFIX}`], { encoding: 'utf8' }).stdout.trim();
let dataDir = '';

before(async () => {
  if (!isRoot) return;
  dataDir = (await getTestImage()).dataDir;
  writeFileSync(
    join(dir, 'lab.yaml'),
    readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8')
      .replace(/^name: article$/m, `name: scenario-machines\nprefix: ${PREFIX}`)
      .replace(/^image: noble$/m, 'image: bookworm'),
  );
  writeFileSync(
    join(dir, 'machines.test.yaml'),
    `lab: ./lab.yaml
steps:
  - name: c0's command runs in its machine
    exec: { on: c0, command: [uname, -n], expect: { stdout: { regex: "^${PREFIX}c0$" } } }
  - name: a background command in a machine
    background: { on: c1-nat, command: [sh, -c, "echo in-machine; exec sleep 3004"], ready: { stdout: in-machine } }
  - name: full cone delivers
    expect-udp: { from: c1, from-port: 12345, to: "100.64.1.100:54321" }
`,
  );
});

after(async () => {
  if (!isRoot) return;
  await labctl(['down', join(dir, 'lab.yaml')]);
  assert.deepEqual(ours(), [], 'nothing of the lab is left');
  assert.equal(nspawns(), '', 'no machine is left');
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  passed: boolean;
  mode: string;
  broughtUp: boolean;
  labAtEnd: string;
  steps: { name: string; status: string; notes: string[]; stdout?: string }[];
}

test('a scenario boots the lab, runs in its machines, and --keep leaves it up for the next run', { skip }, async () => {
  const scenario = join(dir, 'machines.test.yaml');
  const first = await labctl(['test', scenario, '--backend', 'direct', '--data-dir', dataDir, '--keep', '--json'], { timeoutMs: 300_000 });
  assert.equal(first.exitCode, 0, `${first.stdout}\n${first.stderr}`);
  const run = JSON.parse(first.stdout) as Run;
  assert.deepEqual([run.passed, run.mode, run.broughtUp, run.labAtEnd], [true, 'machines', true, 'kept']);
  assert.match(run.steps[0]!.notes[0]!, new RegExp(`^ran in machine ${PREFIX}c0: exited 0$`));
  assert.match(run.steps[1]!.stdout!, /in-machine/);
  assert.equal(spawnSync('pgrep', ['-f', 'sleep 3004']).status, 1, 'the background command in the machine was stopped');
  assert.equal(ours().length, 5, 'kept: the lab is still up');
  assert.ok(existsSync(join('/run/labctl', 'scenario-machines.json')));

  const second = await labctl(['test', scenario, '--json'], { timeoutMs: 120_000 });
  assert.equal(second.exitCode, 0, `${second.stdout}\n${second.stderr}`);
  const again = JSON.parse(second.stdout) as Run;
  assert.deepEqual([again.mode, again.broughtUp, again.labAtEnd], ['machines', false, 'left as it was']);
  assert.match(nspawns(), new RegExp(`${PREFIX}c0`), 'the machines still run');

  const down = await labctl(['down', join(dir, 'lab.yaml')]);
  assert.equal(down.exitCode, 0, down.stderr);
  assert.deepEqual(ours(), []);
});
