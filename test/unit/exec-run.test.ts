// The command runner (src/exec/run.ts), for real with small commands (no root needed): what a
// success, an exit, a timeout, a signal and a missing executable give, stdin and streamed
// lines, how commands are shown (shell-quoted), and that a command dies with a labctl killed
// by SIGKILL (the parent-death signal setpriv sets).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CommandError, commandLog, formatCommand, run, shellQuote, spawnArgv } from '../../src/exec/run.js';
import { alive } from '../../src/util/process.js';

const RUN_MODULE = new URL('../../src/exec/run.ts', import.meta.url).pathname;
const hasSetpriv = existsSync('/usr/bin/setpriv') || existsSync('/bin/setpriv');

/** The rejection of p, which must be a CommandError. */
async function commandError(p: Promise<unknown>): Promise<CommandError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CommandError, `not a CommandError: ${String(e)}`);
    return e;
  }
  assert.fail('the command did not fail');
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe('run', () => {
  test('a success: its output, exit code 0, not timed out, no signal, and it is logged', async () => {
    const r = await run(['sh', '-c', 'echo out; echo err >&2']);
    assert.deepEqual(r, { command: ['sh', '-c', 'echo out; echo err >&2'], exitCode: 0, stdout: 'out\n', stderr: 'err\n', timedOut: false });
    assert.deepEqual(commandLog.at(-1), ['sh', '-c', 'echo out; echo err >&2']);
  });

  test('a non-zero exit throws with the step, the command, the exit code and the end of stderr', async () => {
    const e = await commandError(run(['sh', '-c', 'echo first >&2; echo no such table >&2; exit 3'], { step: 'load rules' }));
    assert.equal(e.exitCode, 3);
    assert.equal(e.timedOut, false);
    assert.equal(e.signal, undefined);
    assert.equal(e.reason, 'exited 3');
    assert.equal(e.message, "load rules: `sh -c 'echo first >&2; echo no such table >&2; exit 3'` exited 3:\nfirst\nno such table");
  });

  test('display replaces the command in the message, as it is written (a description, not quoted)', async () => {
    const e = await commandError(run(['sh', '-c', 'exit 1'], { display: ['nft', '-f', '(the ruleset)'] }));
    assert.equal(e.message, '`nft -f (the ruleset)` exited 1');
    assert.deepEqual(e.command, ['nft', '-f', '(the ruleset)']);
  });

  test('allowFailure returns the failure instead', async () => {
    const r = await run(['sh', '-c', 'echo partial; echo broken >&2; exit 2'], { allowFailure: true });
    assert.equal(r.exitCode, 2);
    assert.equal(r.stdout, 'partial\n');
    assert.equal(r.stderr, 'broken\n');
    assert.equal(r.reason, 'exited 2');
    assert.equal(r.timedOut, false);
  });

  test("input goes to stdin; the environment given replaces labctl's", async () => {
    assert.equal((await run(['cat'], { input: 'line 1\nline 2' })).stdout, 'line 1\nline 2');
    // A command that does not read its input still succeeds.
    assert.equal((await run(['true'], { input: 'x'.repeat(1 << 20) })).exitCode, 0);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell script: ${...} is for sh
    const env = await run(['sh', '-c', 'echo "$ONLY:${HOME-unset}"'], { env: { ONLY: 'this', PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    assert.equal(env.stdout, 'this:unset\n');
  });

  test('onLine gets each line as it is printed, the last one without a newline too', async () => {
    const lines: { line: string; stream: string; at: number }[] = [];
    const started = Date.now();
    const r = await run(['sh', '-c', 'echo one; echo warn >&2; sleep 0.6; printf two'], {
      onLine: (line, stream) => lines.push({ line, stream, at: Date.now() - started }),
    });
    assert.deepEqual(lines.map((l) => `${l.stream}:${l.line}`).sort(), ['stderr:warn', 'stdout:one', 'stdout:two']);
    const one = lines.find((l) => l.line === 'one')!;
    assert.ok(one.at < 500, `the first line came ${one.at} ms after the start, not as it was printed`);
    assert.equal(r.stdout, 'one\ntwo', 'the output is still collected');
    assert.equal(r.stderr, 'warn\n');
  });

  test('a timeout: SIGTERM, timedOut and the signal on the error, said in the message with the last stderr lines', async () => {
    const started = Date.now();
    const e = await commandError(run(['sh', '-c', 'echo still downloading >&2; exec sleep 10'], { timeoutMs: 200, step: 'fetch' }));
    const took = Date.now() - started;
    assert.equal(e.timedOut, true);
    assert.equal(e.signal, 'SIGTERM');
    assert.equal(e.exitCode, undefined);
    assert.equal(e.message, "fetch: `sh -c 'echo still downloading >&2; exec sleep 10'` timed out after 200 ms (killed with SIGTERM):\nstill downloading");
    assert.ok(took >= 200 && took < 2000, `took ${took} ms`);
  });

  test('`sleep 10` with timeoutMs 200: timed out, SIGTERM', async () => {
    const r = await run(['sleep', '10'], { timeoutMs: 200, allowFailure: true });
    assert.equal(r.timedOut, true);
    assert.equal(r.signal, 'SIGTERM');
    assert.equal(r.exitCode, -1);
    assert.equal(r.reason, 'timed out after 200 ms (killed with SIGTERM)');
  });

  test('a command that ignores SIGTERM is SIGKILLed after the grace period, with what it started', async () => {
    let sleeper: number | undefined;
    const started = Date.now();
    // The shell ignores SIGTERM, and so does its child (an ignored signal stays ignored across exec).
    const e = await commandError(
      run(['sh', '-c', 'trap "" TERM; sleep 10 & echo $!; wait'], {
        timeoutMs: 200,
        killGraceMs: 500,
        onLine: (line) => (sleeper ??= Number(line)),
      }),
    );
    const took = Date.now() - started;
    assert.equal(e.timedOut, true);
    assert.equal(e.signal, 'SIGKILL');
    assert.match(e.message, /timed out after 200 ms \(killed with SIGKILL, 500 ms after SIGTERM\)/);
    assert.ok(took >= 700 && took < 3000, `took ${took} ms`);
    assert.ok(sleeper && !alive(sleeper), `its child ${sleeper} is gone too`);
  });

  test('a command killed by a signal from outside: signal and message say so', async () => {
    const e = await commandError(
      run(['sh', '-c', 'echo waiting >&2; echo $$; exec sleep 10'], {
        onLine: (line, stream) => {
          if (stream === 'stdout') process.kill(Number(line), 'SIGINT');
        },
      }),
    );
    assert.equal(e.signal, 'SIGINT');
    assert.equal(e.timedOut, false);
    assert.equal(e.exitCode, undefined);
    // (what it wrote before it was killed stays readable in the pipe: the message has it)
    assert.equal(e.message, "`sh -c 'echo waiting >&2; echo $$; exec sleep 10'` killed by SIGINT:\nwaiting");
  });

  test('an executable that does not exist: could not run, with why', async () => {
    const e = await commandError(run(['/nonexistent/labctl-no-such-tool', '--flag']));
    assert.equal(e.exitCode, undefined);
    assert.match(e.message, /^`\/nonexistent\/labctl-no-such-tool --flag` could not run: .*No such file or directory$/);
    assert.equal(e.stderr, '', "setpriv's complaint is not the command's output");
    const r = await run(['labctl-no-such-tool'], { allowFailure: true });
    assert.equal(r.exitCode, -1);
    assert.match(r.reason!, /^could not run: .*labctl-no-such-tool.*No such file or directory/);
    assert.equal(r.stderr, r.reason);
  });

  test('CommandError keeps its positional form (step, command, exit code, stderr, stdout); its command shows as given', () => {
    const e = new CommandError(
      'configure',
      ['nsenter', '--net=/run/netns/x', '--', 'sh (ip -batch <batch of 2 lines>)'],
      1,
      'RTNETLINK answers: File exists\n',
      '',
    );
    assert.equal(e.message, 'configure: `nsenter --net=/run/netns/x -- sh (ip -batch <batch of 2 lines>)` exited 1:\nRTNETLINK answers: File exists');
    assert.equal(e.timedOut, false);
    assert.equal(e.reason, 'exited 1');
  });
});

describe('shell quoting (for display only)', () => {
  test('plain words stay bare; a space, a quote, an empty word get single quotes', () => {
    assert.equal(shellQuote('/usr/sbin/debootstrap'), '/usr/sbin/debootstrap');
    assert.equal(shellQuote('--include=systemd,dbus'), '--include=systemd,dbus');
    assert.equal(shellQuote('/tmp/a b'), "'/tmp/a b'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote('$HOME;rm'), "'$HOME;rm'");
    assert.equal(formatCommand(['cp', '/tmp/a b', "/tmp/it's"]), "cp '/tmp/a b' '/tmp/it'\\''s'");
  });

  test('a quoted command reads back, through a real shell, as the same words', async () => {
    const words = ['printf', '%s|', '/tmp/a b', "it's", '', 'a\nb', '$x `y` "z"'];
    const r = await run(['sh', '-c', formatCommand(words)]);
    assert.equal(r.stdout, `${words.slice(2).join('|')}|`);
  });

  test('the message quotes an argument with a space and one with a single quote', async () => {
    const e = await commandError(run(['sh', '-c', 'exit 1', 'x', '/tmp/a b', "it's"]));
    assert.match(e.message, /^`sh -c 'exit 1' x '\/tmp\/a b' 'it'\\''s'` exited 1$/);
  });
});

describe('a command dies with labctl', { skip: !hasSetpriv && 'no setpriv on this host' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-run-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('it runs behind setpriv --pdeathsig KILL', () => {
    assert.deepEqual(spawnArgv(['mount', '/x'])?.slice(1), ['--pdeathsig', 'KILL', '--', 'mount', '/x']);
  });

  test('a process running run() is SIGKILLed: the command it runs ends too', async () => {
    // A stand-in labctl: runs one long command through run() and prints that command's pid.
    const script = join(dir, 'runner.mts');
    writeFileSync(
      script,
      `import { run } from ${JSON.stringify(RUN_MODULE)};\n` +
        "await run(['sh', '-c', 'echo $$; exec sleep 30'], { onLine: (line) => process.stdout.write(line + '\\n') });\n",
    );
    const runner = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = await new Promise<number>((resolve, reject) => {
      runner.stdout.setEncoding('utf8').once('data', (d: string) => resolve(Number(d.trim())));
      runner.once('exit', (code) => reject(new Error(`the runner exited (${code}) before starting its command`)));
    });
    try {
      assert.ok(alive(pid), 'the command runs');
      runner.kill('SIGKILL');
      assert.ok(await gone(pid, 2000), `the command ${pid} outlived the runner`);
    } finally {
      runner.kill('SIGKILL');
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
