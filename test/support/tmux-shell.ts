// Drives `labctl shell MACHINE` in a real terminal (a tmux pane) the way a user would:
// a prompt, a command, the terminal's size and a resize, Ctrl-C of a running program, and
// `exit 7` ending labctl with status 7. Shared by the direct backend's test (tmux on this
// host) and the systemd backend's (tmux inside the systemd host).
import assert from 'node:assert/strict';

export interface Ran {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `run` runs an argv where tmux and labctl live; `shellArgv` is the whole labctl command
 * (e.g. [node, bin/labctl.js, 'shell', 'c1-nat']); `socket` names a private tmux server.
 * `expect` is a line of output the machine's shell must print for `probe` (a command).
 */
export async function driveShellInTmux(
  run: (argv: string[]) => Promise<Ran>,
  shellArgv: string[],
  options: { socket: string; probe: string; expect: RegExp; connected?: RegExp },
): Promise<void> {
  const tmux = (...args: string[]) => run(['tmux', '-L', options.socket, '-f', '/dev/null', ...args]);
  const screen = async () => (await tmux('capture-pane', '-p', '-t', 'sh')).stdout;
  const waitFor = async (re: RegExp, what: string, ms = 30_000) => {
    const deadline = Date.now() + ms;
    let text = '';
    while (Date.now() < deadline) {
      text = await screen();
      if (re.test(text)) return text;
      await sleep(200);
    }
    assert.fail(`${what}: not on the screen within ${ms / 1000} s:\n${text}`);
  };
  // A small sh runs labctl and then prints its exit status on the screen. (tmux's own
  // #{pane_dead_status} was not reliable here: tmux 3.3a sometimes left the exited labctl
  // unreaped after a Ctrl-C in the pane, with no status, until it got another SIGCHLD.)
  const made = await tmux(
    'new-session',
    '-d',
    '-s',
    'sh',
    '-x',
    '200',
    '-y',
    '50',
    '--',
    'sh',
    '-c',
    '"$@"; echo "labctl-exit=$?"; exec sleep 600',
    'sh',
    ...shellArgv,
  );
  assert.equal(made.exitCode, 0, made.stderr);
  try {
    if (options.connected) await waitFor(options.connected, 'the shell connecting');
    await waitFor(/[#$] *$/m, 'a shell prompt');

    await tmux('send-keys', '-t', 'sh', options.probe, 'Enter');
    await waitFor(options.expect, `the output of ${options.probe}`);

    // The terminal's size reaches the machine's shell, and so does a resize.
    const paneSize = async () => (await tmux('display-message', '-p', '-t', 'sh', '#{pane_height} #{pane_width}')).stdout.trim();
    const before = await paneSize();
    await tmux('send-keys', '-t', 'sh', 'clear; echo "size=$(stty size)"', 'Enter');
    await waitFor(new RegExp(`^size=${before}\\s*$`, 'm'), `the terminal size (${before})`);
    const resized = await tmux('resize-window', '-t', 'sh', '-x', '120', '-y', '40');
    assert.equal(resized.exitCode, 0, resized.stderr);
    const after = await paneSize();
    assert.notEqual(after, before, 'tmux resized the pane');
    await sleep(300);
    await tmux('send-keys', '-t', 'sh', 'clear; echo "size=$(stty size)"', 'Enter');
    await waitFor(new RegExp(`^size=${after}\\s*$`, 'm'), `the new terminal size after a resize (${after})`);

    // Ctrl-C interrupts the program in the machine, not the shell nor labctl.
    await tmux('send-keys', '-t', 'sh', 'clear; sleep 300', 'Enter');
    await sleep(1000);
    await tmux('send-keys', '-t', 'sh', 'C-c');
    await sleep(300);
    await tmux('send-keys', '-t', 'sh', 'echo "slept=$? still=$((6 * 7))"', 'Enter');
    await waitFor(/^slept=130 still=42\s*$/m, 'sleep interrupted by Ctrl-C (status 130), the shell still answering', 10_000);

    // The shell's exit status is labctl's.
    await tmux('send-keys', '-t', 'sh', 'exit 7', 'Enter');
    await waitFor(/^labctl-exit=7\s*$/m, "labctl shell ending with the shell's status 7", 20_000);
  } finally {
    await tmux('kill-server');
  }
}
