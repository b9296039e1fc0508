// docs/github-actions.yml, the example workflow for users' repositories, run as far as this
// machine allows: its `run:` steps, in order, as GitHub's runner runs them (bash -e, in the
// workspace, with the workflow's env), inside a booted systemd host container
// (test/support/systemd-host.ts), where systemd is PID 1 as on GitHub's Ubuntu runners, so
// labctl picks its systemd backend by itself.
//
// What cannot run here, and why (asserted below, so that the list cannot silently grow):
//   - every `uses:` step (actions/checkout, actions/cache, actions/upload-artifact): they
//     are GitHub's actions, not commands. In their place: the workspace holds labctl's
//     checkout at ./labctl (a link to /project, this checkout), and the test checks their
//     inputs (the cache's paths are the image's files in the data dir and its key hashes
//     the recipe; the upload's paths are the files the scenario step writes).
//   - the install step (scripts/install.sh): apt-get and npm ci need the network, which
//     the host has none of (--private-network), and /project is read-only (npm ci and the
//     build write there). The host's image already has what labctl needs, and dist/ is
//     built on the real host.
//   - the image build: labctl inside the host cannot loop-mount (no loop devices there)
//     and has no network for debootstrap; image builds are tested in image.test.ts.
//   - handing the built image to the cache: it needs the image that build step makes.
// The runner's user is root here, so `sudo` is a stand-in (/usr/local/bin/sudo in the
// host) that runs its command with an environment reset as sudo's env_reset does: the
// steps must pass what labctl needs on its command line, not through the environment.
//
// Then the same "Run the scenario" step with a scenario whose machines boot (the
// workflow's purpose for users' own software): under the systemd backend, from the host's
// bookworm image (HOST_DATA_DIR, standing in for the image the cache restores; the one
// variable the sudo stand-in lets through, for this run only), with a capture of the run,
// which "Make the reports readable" then hands to the runner's user.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { ROOT } from '../support/cli.js';
import { HOST_DATA_DIR, HOST_PROJECT, execInHost, isClean, startHost, stopHost, type LeakReport, type SystemdHost } from '../support/systemd-host.js';

const isRoot = process.getuid?.() === 0;
const WORKFLOW_FILE = join(ROOT, 'docs', 'github-actions.yml');
/** $GITHUB_WORKSPACE inside the host. */
const WORKSPACE = '/root/work';
const DEFAULT_DATA_DIR = '/var/lib/labctl';

/** The `run:` steps that do not run here, and why (see the top of this file). */
const SKIPPED_RUN_STEPS: Record<string, string> = {
  "Install labctl's host packages, dependencies and build": 'apt-get and npm ci need the network (the host has none) and write into the read-only checkout',
  'Build the image': 'no loop devices and no network inside the host',
  'Hand the new image to the cache': 'needs the image the build step makes',
};
const RUN_STEPS_HERE = ['Put labctl on PATH', 'Let the cache write the image folder', 'Run the scenario', 'Make the reports readable'];
const USES_STEPS = ['actions/checkout', 'actions/checkout', 'actions/cache', 'actions/upload-artifact'];

interface WorkflowStep {
  name: string;
  id?: string;
  if?: string;
  uses?: string;
  run?: string;
  with?: Record<string, string>;
  env?: Record<string, string>;
}
interface Workflow {
  env?: Record<string, string>;
  jobs: Record<string, { 'runs-on': string; env?: Record<string, string>; steps: WorkflowStep[] }>;
}

const workflow = parse(readFileSync(WORKFLOW_FILE, 'utf8')) as Workflow;
const [jobName, job] = Object.entries(workflow.jobs)[0]!;
const steps = job.steps;
const stepNamed = (name: string) => {
  const s = steps.find((x) => x.name === name);
  assert.ok(s, `docs/github-actions.yml has a step "${name}"`);
  return s;
};
const stepsToRun = () => steps.filter((s) => s.run !== undefined && !(s.name in SKIPPED_RUN_STEPS));

// sudo as root: the command alone, with the environment sudo's env_reset leaves (and
// LABCTL_DATA_DIR when the test sets it, for the run with machines only).
const SUDO_STAND_IN = `#!/bin/sh
# A stand-in for sudo in labctl's CI workflow test (test/e2e/ci-workflow.test.ts): already root.
exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM="$TERM" \${LABCTL_DATA_DIR:+LABCTL_DATA_DIR="$LABCTL_DATA_DIR"} "$@"
`;

/** A lab and a scenario whose machines boot (the article's lab on bookworm), with a capture. */
const MACHINES_LAB = readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8').replace(/^image: noble$/m, 'image: bookworm');
const MACHINES_SCENARIO = `lab: ./lab.yaml
name: ci-machines
capture: { on: c0-nat, link: inet, file: run.pcapng, filter: [udp] }
steps:
  - name: c0's command runs in its machine
    exec: { on: c0, command: [uname, -n], expect: { stdout: { regex: "^c0$" } } }
  - name: full cone delivers
    expect-udp: { from: c1, from-port: 12345, to: "100.64.1.100:54321" }
`;

/** Where a path inside the host is, seen from the real host. */
const inside = (h: SystemdHost, path: string) => `/proc/${h.leader}/root${path}`;

function suiteCounts(xml: string): Record<string, number> {
  const open = /<testsuite\s([^>]*)>/.exec(xml)?.[1] ?? '';
  return Object.fromEntries([...open.matchAll(/(tests|failures|errors|skipped)="(\d+)"/g)].map((m) => [m[1], Number(m[2])]));
}

describe('docs/github-actions.yml inside a systemd host', { skip: !isRoot && 'needs root: boots a systemd host container' }, () => {
  let h: SystemdHost;
  let report: LeakReport | undefined;

  /** One `run:` step as the runner runs it: bash -e, in the workspace, with the workflow's env. */
  async function runStep(step: WorkflowStep, extraEnv: Record<string, string> = {}) {
    const env = { ...workflow.env, ...job.env, ...step.env, CI: 'true', GITHUB_ACTIONS: 'true', GITHUB_WORKSPACE: WORKSPACE, ...extraEnv };
    const started = Date.now();
    const r = await execInHost(['bash', '-e', '-c', step.run!], { cwd: WORKSPACE, env, allowFailure: true, timeoutMs: 300_000 });
    process.stderr.write(`# step "${step.name}": exit ${r.exitCode} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    assert.equal(r.exitCode, 0, `step "${step.name}" failed:\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  before(
    async () => {
      h = await startHost();
      // The runner's workspace: labctl's checkout at ./labctl, as the workflow's second checkout puts it.
      const mk = await execInHost(['mkdir', '-p', WORKSPACE]);
      assert.equal(mk.exitCode, 0);
      await execInHost(['ln', '-s', HOST_PROJECT, `${WORKSPACE}/labctl`]);
      writeFileSync(inside(h, '/usr/local/bin/sudo'), SUDO_STAND_IN, { mode: 0o755 });
    },
    { timeout: 40 * 60_000 },
  );

  after(
    async () => {
      report ??= await stopHost();
    },
    { timeout: 120_000 },
  );

  it('names which steps run here and which cannot; the actions get the paths the steps use', () => {
    assert.equal(Object.keys(workflow.jobs).length, 1, 'one job');
    assert.match(job['runs-on'], /^ubuntu-/, `${jobName} runs on GitHub's Ubuntu runners (systemd is PID 1 there)`);
    assert.deepEqual(
      steps.filter((s) => s.uses).map((s) => s.uses!.replace(/@.*/, '')),
      USES_STEPS,
    );
    assert.ok(
      steps.every((s) => (s.uses === undefined) !== (s.run === undefined)),
      'each step either uses an action or runs commands',
    );
    assert.deepEqual(
      steps.filter((s) => s.run !== undefined && s.name in SKIPPED_RUN_STEPS).map((s) => s.name),
      Object.keys(SKIPPED_RUN_STEPS),
      'the skipped run: steps are exactly these',
    );
    assert.deepEqual(
      stepsToRun().map((s) => s.name),
      RUN_STEPS_HERE,
    );
    // The run: scripts are run as they are here: what they need comes from env:, not ${{ }}.
    for (const s of steps.filter((x) => x.run)) assert.doesNotMatch(s.run!, /\$\{\{/, `step "${s.name}" takes its values from env:`);
    assert.match(stepNamed("Install labctl's host packages, dependencies and build").run!, /labctl\/scripts\/install\.sh/);
    assert.match(stepNamed('Build the image').run!, /labctl image build "\$LABCTL_IMAGE"/);
    // The image and its metadata, in the data dir, keyed on the recipe's hash; the build only on a miss.
    const cache = stepNamed('Restore the image');
    assert.equal(cache.uses, 'actions/cache@v4');
    assert.deepEqual(cache.with!.path!.trim().split('\n'), [
      `${DEFAULT_DATA_DIR}/images/\${{ env.LABCTL_IMAGE }}.btrfs`,
      `${DEFAULT_DATA_DIR}/images/\${{ env.LABCTL_IMAGE }}.json`,
    ]);
    assert.match(cache.with!.key!, /hashFiles\(format\('labctl\/images\/\{0\}\.yaml', env\.LABCTL_IMAGE\)\)/);
    assert.equal(stepNamed('Build the image').if, `steps.${cache.id}.outputs.cache-hit != 'true'`);
    assert.ok(existsSync(join(ROOT, 'images', `${workflow.env!.LABCTL_IMAGE}.yaml`)), 'LABCTL_IMAGE names a shipped recipe');
    assert.ok(existsSync(join(ROOT, workflow.env!.SCENARIO!.replace(/^labctl\//, ''))), 'SCENARIO names a shipped scenario');
    const upload = stepNamed('Upload the JUnit report and the captures');
    assert.deepEqual(upload.with!.path!.trim().split('\n'), ['junit.xml', '*.pcapng']);
    assert.equal(upload.if, 'always()');
    assert.match(stepNamed('Run the scenario').run!, /--junit junit\.xml/);
  });

  it("runs the workflow's run: steps: the article scenario passes and junit.xml says so", { timeout: 5 * 60_000 }, async () => {
    for (const step of stepsToRun()) await runStep(step);
    // (An absolute link, read inside: through /proc/PID/root it would resolve on the real host.)
    const onPath = await execInHost(['readlink', '-f', '/usr/local/bin/labctl']);
    assert.equal(onPath.stdout.trim(), `${HOST_PROJECT}/bin/labctl.js`, 'labctl on PATH');
    assert.ok(existsSync(inside(h, `${DEFAULT_DATA_DIR}/images`)), 'the image folder for the cache');
    const junitFile = inside(h, `${WORKSPACE}/junit.xml`);
    assert.ok(existsSync(junitFile), 'junit.xml in the workspace, where the upload step looks');
    const xml = readFileSync(junitFile, 'utf8');
    const scenarioSteps = (parse(readFileSync(join(ROOT, 'machines', 'article.test.yaml'), 'utf8')) as { steps: unknown[] }).steps.length;
    assert.deepEqual(suiteCounts(xml), { tests: scenarioSteps, failures: 0, errors: 0, skipped: 0 }, xml);
    assert.equal([...xml.matchAll(/<testcase\s/g)].length, scenarioSteps);
    const lab = await execInHost(['ip', 'netns', 'list']);
    assert.equal(lab.stdout.trim(), '', 'the scenario took its lab down');
  });

  it('the scenario step with machines: they boot under the systemd backend; JUnit and the capture for the upload', { timeout: 5 * 60_000 }, async () => {
    const dir = `${WORKSPACE}/scenarios`;
    await execInHost(['mkdir', '-p', dir]);
    writeFileSync(inside(h, `${dir}/lab.yaml`), MACHINES_LAB);
    writeFileSync(inside(h, `${dir}/machines.test.yaml`), MACHINES_SCENARIO);
    for (const name of ['Run the scenario', 'Make the reports readable']) {
      await runStep(stepNamed(name), { SCENARIO: `${dir}/machines.test.yaml`, LABCTL_DATA_DIR: HOST_DATA_DIR });
    }
    const xml = readFileSync(inside(h, `${WORKSPACE}/junit.xml`), 'utf8');
    assert.deepEqual(suiteCounts(xml), { tests: 2, failures: 0, errors: 0, skipped: 0 }, xml);
    // uname -n said c0 (the step passed): it ran in the machine, not in its namespace, where it says the host's name.
    const journal = await execInHost(['journalctl', '--no-pager', '-q', '-o', 'cat', '-u', 'labctl-*'], { allowFailure: true });
    assert.notEqual(journal.stdout.trim(), '', "the machines ran as units of the host's systemd (the systemd backend)");
    const pcap = readFileSync(inside(h, `${WORKSPACE}/run.pcapng`));
    assert.equal(pcap.readUInt32LE(0), 0x0a0d0d0a, 'a pcapng file, where the upload step looks');
    const units = await execInHost(['systemctl', 'list-units', '--all', '--plain', '--no-legend', '--no-pager', 'labctl-*'], { allowFailure: true });
    assert.equal(units.stdout.trim(), '', 'the machines were units of the systemd backend, and are gone');
    const machines = await execInHost(['machinectl', 'list', '--no-legend', '--no-pager'], { allowFailure: true });
    assert.deepEqual(
      machines.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/^No machines/.test(l)),
      [],
      'machined lists none',
    );
  });

  it('stops the host; the real host is clean', { timeout: 120_000 }, async () => {
    report = await stopHost();
    assert.ok(isClean(report), JSON.stringify(report, null, 2));
  });
});
