// `labctl capture MEMBER [--link PEER] [-w FILE|-] [--duration S] [--count N] [-- FILTER...]`:
// tcpdump inside a lab member's namespace, on all of its links' interfaces or on the one to
// PEER, as pcapng (each packet tagged with its interface) or as readable lines named after
// the lab's members. The lab is the one that is up with that member; machines are not needed.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Command } from 'commander';
import { action, example, requireRoot } from './common.js';
import { LabctlError, UsageError } from '../util/errors.js';
import type { CaptureTarget } from '../capture/target.js';

interface CaptureOpts {
  link?: string;
  lab?: string;
  write?: string;
  duration?: string;
  count?: string;
}

function positiveSeconds(text: string): number {
  const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
  if (!(n > 0)) throw new UsageError(`--duration must be a number of seconds above 0 (e.g. 10 or 0.5), not "${text}"`);
  return n;
}

function positiveCount(text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && Number.isSafeInteger(n))) throw new UsageError(`--count must be a whole number of packets above 0, not "${text}"`);
  return n;
}

/** The member's lab (up), its links' interfaces, checked against the namespace as it is. */
async function resolveTarget(member: string, opts: CaptureOpts, notes: string[]): Promise<CaptureTarget> {
  const { allStates } = await import('../host/state.js');
  const { labOfMember, captureTarget, captureTargetFromState } = await import('../capture/target.js');
  const { namespaceInterfaces } = await import('../apply/capture.js');
  const state = labOfMember(allStates(), member, opts.lab);
  const { loadLab } = await import('../lab/load.js');
  const { members } = await import('../lab/model.js');
  let lab: ReturnType<typeof loadLab> | undefined;
  try {
    lab = loadLab(state.source);
  } catch {
    notes.push(`the file lab "${state.lab}" was brought up from (${state.source}) cannot be read: addresses are not named`);
  }
  if (lab && (lab.name !== state.lab || !members(lab).some((m) => m.name === member))) {
    notes.push(`the file lab "${state.lab}" was brought up from (${state.source}) has changed since: addresses are not named`);
    lab = undefined;
  }
  if (lab) {
    const target = captureTarget(lab, state, member, opts.link);
    const live = new Set((await namespaceInterfaces(target.netns)).map((i) => i.ifname));
    const missing = target.interfaces.filter((i) => !live.has(i.ifname)).map((i) => i.ifname);
    if (missing.length) {
      throw new LabctlError(
        `${member}'s namespace ${target.netns} has no interface ${missing.join(', ')} (its lab file ${state.source} changed since the lab came up? run \`labctl net up\` again)`,
      );
    }
    return target;
  }
  if (opts.link !== undefined) throw new LabctlError(`without the lab's file, which link of ${member} goes to ${opts.link} is unknown: capture without --link`);
  // Every veth of the namespace: a bridge only repeats what its ports carry.
  const live = (await namespaceInterfaces(state.namespaces.find((n) => n.owner === member)!.netns)).filter((i) => i.kind !== 'bridge');
  return captureTargetFromState(
    state,
    member,
    live.map((i) => i.ifname),
  );
}

/** Opens the -w file (truncating it, as tcpdump does); a path that cannot be written is bad input. */
function openOutput(path: string): number {
  try {
    return openSync(path, 'w', 0o644);
  } catch (e) {
    throw new UsageError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

export function registerCaptureCommand(program: Command): void {
  example(
    program
      .command('capture')
      .description(
        "capture a lab member's packets with tcpdump in its namespace, on all of its links or one: pcapng (-w) or readable lines named after the lab's members; needs no machine",
      )
      .argument('<member>', 'a member of a lab that is up: a NAT, a node, the internet, an internet node')
      .argument('[filter...]', 'a tcpdump (BPF) filter expression, after --, e.g. -- udp port 54321')
      .option('--link <peer>', 'only the link to this member (e.g. --link inet for a NAT uplink)')
      .option('--lab <lab>', 'the lab, when more than one lab that is up has a member of that name')
      .option('-w, --write <file>', 'write pcapng to FILE, or to standard output with -w - (e.g. | wireshark -k -i -)')
      .option('--duration <seconds>', 'stop after this many seconds')
      .option('--count <n>', 'stop after N packets (in all)')
      .addHelpText(
        'after',
        `
Without -w each packet is one line as tcpdump -n prints it, after the interface it was
captured on, with the lab member's name beside each of the lab's addresses:
  ve-c1-nat-inet  10:02:11.270411 IP 100.64.2.100.54321 (c1-nat) > 100.64.1.100.54321 (c0-nat): UDP, length 5
With -w the file is pcapng: one interface per link (its name, and the member and peer in
its description), each packet tagged with its interface, in capture order. Ctrl-C,
--duration or --count ends the capture with the file complete; no tcpdump is left running.`,
      )
      .action(
        action(async (member: string, filter: string[], opts: CaptureOpts) => {
          const durationS = opts.duration !== undefined ? positiveSeconds(opts.duration) : undefined;
          const count = opts.count !== undefined ? positiveCount(opts.count) : undefined;
          const toStdout = opts.write === '-';
          if (toStdout && process.stdout.isTTY) {
            throw new UsageError('-w - writes pcapng to standard output, which is a terminal: pipe it (-w - | wireshark -k -i -) or name a file');
          }
          requireRoot('capture', "it runs tcpdump in the lab's network namespaces");
          const notes: string[] = [];
          const target = await resolveTarget(member, opts, notes);
          if (target.interfaces.length === 0) throw new LabctlError(`${member} has no interfaces to capture on in ${target.netns}`);
          const { checkFilter, findTcpdump, runCapture, TCPDUMP_MISSING } = await import('../apply/capture.js');
          const tcpdump = findTcpdump();
          if (!tcpdump) throw new LabctlError(TCPDUMP_MISSING);
          await checkFilter(tcpdump, target.netns, target.interfaces[0]!.ifname, filter);
          for (const n of notes) process.stderr.write(`labctl: note: ${n}\n`);

          const fd = opts.write !== undefined && !toStdout ? openOutput(opts.write) : undefined;
          const where = fd !== undefined ? opts.write! : toStdout ? 'standard output' : undefined;
          const writeOut = (bytes: Buffer) => {
            if (fd !== undefined) writeSync(fd, bytes);
            else process.stdout.write(bytes);
          };
          const note = (text: string) => process.stderr.write(`labctl: ${text}\n`);
          try {
            const result = await runCapture({
              target,
              tcpdump,
              filter,
              output: opts.write !== undefined ? { kind: 'pcapng', write: writeOut } : { kind: 'text' },
              ...(durationS !== undefined ? { durationS } : {}),
              ...(count !== undefined ? { count } : {}),
              onReady: () => {
                const on = target.interfaces.map((i) => (i.peer ? `${i.ifname} (to ${i.peer})` : i.ifname)).join(', ');
                const what = [filter.length ? `filter "${filter.join(' ')}"` : '', where ? `pcapng to ${where}` : ''].filter(Boolean).join('; ');
                note(`capturing on ${target.member} (${target.netns}): ${on}${what ? `; ${what}` : ''}; Ctrl-C stops`);
              },
              onNote: note,
              writeText: (text) => process.stdout.write(text),
              onOutputClosed: (stop) => {
                const onError = () => stop();
                process.stdout.on('error', onError);
                return () => process.stdout.off('error', onError);
              },
            });
            const dropped = result.dropped ? `, ${result.dropped} dropped by the kernel` : '';
            note(`${result.packets} packet${result.packets === 1 ? '' : 's'} captured on ${target.member}${dropped}${where ? ` (${where})` : ''}`);
            return 0;
          } finally {
            if (fd !== undefined) closeSync(fd);
          }
        }),
      ),
    'sudo labctl capture c1-nat',
    'sudo labctl capture c1-nat --link inet -w uplink.pcapng --duration 30',
    'sudo labctl capture c1-nat -w - | wireshark -k -i -',
    'sudo labctl capture c0 --count 10 -- udp port 12345',
  );
}
