// `labctl conntrack NAT [FILE|LAB] [--json] [--follow]`: a NAT's connection tracking
// table (or its events), parsed and named after the lab's members.
import type { Command } from 'commander';
import { action, example } from './common.js';
import { UsageError } from '../util/errors.js';
import { loadLab } from '../lab/load.js';
import type { Lab } from '../lab/model.js';
import type { LabState } from '../host/state.js';
import type { ConntrackTarget } from '../conntrack/target.js';

const looksLikePath = (arg: string) => arg.includes('/') || arg.endsWith('.yaml') || arg.endsWith('.yml');

/** A lab's state when readable (a non-root user cannot read /run/labctl). */
async function stateOf(lab: string): Promise<LabState | undefined> {
  const { readState } = await import('../host/state.js');
  try {
    return readState(lab);
  } catch {
    return undefined;
  }
}

async function labsUp(): Promise<string[]> {
  const { allStates } = await import('../host/state.js');
  try {
    return allStates().map((s) => s.lab);
  } catch {
    return [];
  }
}

/**
 * FILE is a lab file, a built-in lab, or the name of a lab that is up (then its state
 * says which file it came up from). Bad input (unknown lab file, unknown member) throws
 * a UsageError/LabError (exit 2); a lab that is not up throws an Error (exit 1).
 */
async function resolveTarget(memberName: string, file: string, notes: string[]): Promise<ConntrackTarget> {
  const { targetInLab, targetInState, memberChoices, stateChoices, choicesText } = await import('../conntrack/target.js');
  const upState = looksLikePath(file) ? undefined : await stateOf(file);
  let lab: Lab | undefined;
  if (upState) {
    try {
      lab = loadLab(upState.source);
    } catch {
      notes.push(`the file lab "${upState.lab}" was brought up from (${upState.source}) cannot be read: addresses are not named`);
    }
  } else {
    lab = loadLab(file);
  }
  let target: ConntrackTarget | undefined;
  if (lab) {
    target = targetInLab(lab, memberName);
    if (!target) throw new UsageError(`lab "${lab.name}" has no NAT or other member "${memberName}" (${choicesText(memberChoices(lab))})`);
  } else {
    target = targetInState(upState!, memberName);
    if (!target) throw new UsageError(`lab "${upState!.lab}" has no NAT or other member "${memberName}" (${choicesText(stateChoices(upState!))})`);
  }

  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new UsageError("conntrack needs root (it enters the lab's network namespaces); run it with sudo");
  }
  const state = upState ?? (await stateOf(target.lab));
  if (!state) {
    const up = await labsUp();
    throw new Error(
      `lab "${target.lab}" is not up; bring it up with \`labctl net up${file === 'article' ? '' : ` ${file}`}\`` +
        (up.length ? ` (labs up: ${up.join(', ')})` : ''),
    );
  }
  const { listNetns } = await import('../host/netns.js');
  if (!listNetns().includes(target.netns)) {
    throw new Error(
      `lab "${target.lab}" is not fully up: ${target.member}'s namespace ${target.netns} does not exist (try \`labctl net up\` again, or \`labctl net down\`)`,
    );
  }
  return target;
}

export function registerConntrackCommand(program: Command): void {
  example(
    program
      .command('conntrack')
      .description(
        "list (or with --follow stream, as `conntrack -E` does) the connection tracking entries of a NAT's namespace, named after the lab's members; needs no machine",
      )
      .argument('<nat>', 'NAT name, e.g. c1-nat (any other lab member works too: a node, the internet)')
      .argument('[file]', 'lab file, built-in lab, or the name of a lab that is up', 'article')
      .option('--json', 'print one JSON object per entry or event, one per line')
      .option('--follow', 'stream events (NEW, UPDATE, DESTROY) with a timestamp until Ctrl-C or the lab goes down')
      .addHelpText(
        'after',
        `
Each entry shows its protocol, state and flags (UNREPLIED, ASSURED), timeout and the
translation, left to right as the packet travels, addresses named after the lab's members:
  c1 10.0.2.1:44432 -> 100.64.2.100:54321 -> 100.64.1.100:54321 c0-nat     (source NAT)
  c1-nat 100.64.2.100:54321 -> 100.64.1.100:54321 -> 10.0.1.1:12345 c0     (port forward)
The kernel removes an expired entry lazily: its DESTROY event may come well after its
timeout (listing the table removes expired entries at once).`,
      )
      .action(
        action(async (memberName: string, file: string, opts: { json?: boolean; follow?: boolean }) => {
          const notes: string[] = [];
          const target = await resolveTarget(memberName, file, notes);
          for (const n of notes) process.stderr.write(`labctl: note: ${n}\n`);
          const { annotate } = await import('../conntrack/annotate.js');
          const { entryJson, formatEntries, formatEvent } = await import('../conntrack/format.js');
          const { followEvents, listEntries } = await import('../conntrack/watch.js');

          if (!opts.follow) {
            const entries = (await listEntries(target.netns)).map((e) => annotate(e, target.names));
            if (opts.json) process.stdout.write(entries.map((e) => `${JSON.stringify(entryJson(e))}\n`).join(''));
            else if (entries.length === 0) process.stdout.write(`no connection tracking entries in ${target.member} (${target.netns})\n`);
            else process.stdout.write(formatEntries(entries));
            return 0;
          }

          const result = await followEvents(target.netns, {
            onStart: () => process.stderr.write(`labctl: following the conntrack events of ${target.member} (${target.netns}); Ctrl-C stops\n`),
            onEvent: (raw) => {
              const e = annotate(raw, target.names);
              // One write per event: stdout to a pipe or file is written synchronously, so each line is out at once.
              process.stdout.write(`${opts.json ? JSON.stringify(entryJson(e)) : formatEvent(e)}\n`);
            },
            onNote: (text) => process.stderr.write(`labctl: ${text}\n`),
          });
          return result.exitCode;
        }),
      ),
    'sudo labctl conntrack c1-nat',
    'sudo labctl conntrack c1-nat --follow',
    'sudo labctl conntrack c0-nat my-lab.yaml --json',
  );
}
