// `labctl link show|set|reset|down|up`: the links of a lab that is up, changed live. What
// they change is recorded in the lab's state (apply/links.ts), so that `link show`,
// `status --json` and `graph` show it; `down` removes it all with the lab.
import type { Command } from 'commander';
import { type InputIssue, UsageError } from '../util/errors.js';
import { action, example, printJson, requireRoot } from './common.js';

/** Why every `link` command needs root. */
const ROOT_WHY = "it reads the lab's state in /run/labctl and changes queueing disciplines and interfaces inside the lab's network namespaces";

const FIELD_OPTIONS = [
  ['delay', '<time>', 'added one-way delay: 40ms, 1.5s, 500us (netem)'],
  ['jitter', '<time>', 'delay variation, at most the delay: 10ms (netem)'],
  ['loss', '<percent>', 'packets lost: 1% (netem)'],
  ['rate', '<rate>', 'rate limit: 5mbit, 512kbit, 1gbit (tbf; needs no netem)'],
  ['corrupt', '<percent>', 'packets with a bit flipped: 0.1% (netem)'],
  ['duplicate', '<percent>', 'packets sent twice: 0.1% (netem)'],
  ['reorder', '<percent>', 'packets sent ahead of the others, which wait out the delay: 1% (netem; needs a delay)'],
] as const;

type SetOptions = Partial<Record<(typeof FIELD_OPTIONS)[number][0] | 'profile' | 'direction' | 'lab', string>> & { json?: boolean; all?: boolean };

function refuse(issues: InputIssue[]): never {
  throw new UsageError(issues.map((i) => `${i.path}: ${i.message}`).join('\n'), { issues });
}

const labOption = (cmd: Command) => cmd.option('--lab <name>', 'the lab that is up (needed only when several are)');

export function registerLinkCommands(program: Command): void {
  const link = example(
    program.command('link').description('the links of a lab that is up: impairments (delay, jitter, loss, rate, ...) and outages, changed live'),
    'sudo labctl link show',
    'sudo labctl link set c1-nat inet --delay 40ms --jitter 10ms --loss 1%',
    'sudo labctl link set c0 c0-nat --rate 5mbit --direction upstream',
    'sudo labctl link down c1-nat inet',
    'sudo labctl link reset --all',
  );

  example(
    link
      .command('show')
      .description('every link of the labs that are up: its ends, interfaces, impairment in each direction, and whether it is down')
      .argument('[lab]', 'only this lab')
      .option('--json', 'print as JSON')
      .action(
        action(async (labName: string | undefined, opts: { json?: boolean }) => {
          requireRoot('link show', "it reads the labs' state in /run/labctl, which only root can read");
          const { allStates } = await import('../host/state.js');
          const { formatLinkViews, linksOfState } = await import('../report/links.js');
          const up = allStates().filter((s) => s.status === 'up');
          const states = labName === undefined ? up : up.filter((s) => s.lab === labName);
          if (labName !== undefined && !states.length)
            throw new UsageError(`lab "${labName}" is not up${up.length ? ` (up: ${up.map((s) => s.lab).join(', ')})` : ' (no lab is up)'}`);
          const labs = states.map((s) => ({ lab: s.lab, source: s.source, links: linksOfState(s) }));
          if (opts.json) return printJson(labs);
          process.stdout.write(labs.length ? formatLinkViews(labs) : 'no lab is up; start one with `sudo labctl net up` (or `labctl up`)\n');
        }),
      ),
    'sudo labctl link show',
    'sudo labctl link show article --json',
  );

  const set = link
    .command('set')
    .description(
      "replace a link's impairment in one step (never a moment with none), or every link's with --all; the fields not given have none, apart from a profile's",
    )
    .argument('[a]', 'one end: a member of the lab (node, NAT, internet)')
    .argument('[b]', 'the other end (either order)')
    .option('--all', 'every link of the lab: one tc batch per namespace, all at once');
  for (const [name, arg, what] of FIELD_OPTIONS) set.option(`--${name} ${arg}`, what);
  set
    .option('--profile <name>', 'a named profile of a common access link (README "Link impairments"); the options beside it override it')
    .option('--direction <which>', 'both (default), upstream (what the end farther from the internet sends) or downstream; the other direction stays as it is');
  labOption(set).option('--json', 'print the result as JSON');
  example(
    set.action(
      action(async (a: string | undefined, b: string | undefined, opts: SetOptions) => {
        if (opts.all && a !== undefined) throw new UsageError('link set: give either two members (A B) or --all, not both');
        if (!opts.all && (a === undefined || b === undefined)) throw new UsageError('link set: give the two members the link joins (A B), or --all');
        const { checkLinkEntry } = await import('../lab/schema.js');
        const { OPTION_OF, resolveLinkEntry, findLink } = await import('../lab/resolve-links.js');
        const where = (field: string) => OPTION_OF[field as keyof typeof OPTION_OF] ?? field;
        const entryFor = (ends: [string, string]) => {
          const raw: Record<string, unknown> = { between: ends };
          for (const key of [...FIELD_OPTIONS.map((f) => f[0]), 'profile', 'direction'] as const) if (opts[key] !== undefined) raw[key] = opts[key];
          const checked = checkLinkEntry(raw, where);
          if (!checked.entry) refuse(checked.issues);
          return checked.entry;
        };
        // The options alone are checked before root and the lab (the ends stand in until the lab is read).
        entryFor(opts.all ? ['a', 'b'] : [a!, b!]);
        requireRoot('link set', ROOT_WHY);
        const { effectiveShaping, linkTarget, setLinks } = await import('../apply/links.js');
        const target = linkTarget(opts.lab, opts.all ? [] : [a!, b!]);
        const pairs: [string, string][] = opts.all ? target.lab.links.map((l) => [l.a.owner, l.b.owner]) : [[a!, b!]];
        const issues: InputIssue[] = [];
        const changes = pairs.map((ends) => {
          const r = resolveLinkEntry(target.lab, entryFor(ends), where, (path, message) => issues.push({ path, message }));
          if (!r) refuse(issues);
          // resolveLinkEntry has found the link (it reports a pair that is not one).
          const theLink = target.lab.links[(findLink(target.lab, ...ends) as { index: number }).index]!;
          return { link: theLink, shaping: { ...effectiveShaping(theLink, target.state), ...r.shaping } };
        });
        const results = await setLinks(target, changes);
        if (opts.json) return printJson(opts.all ? results : results[0]);
        process.stdout.write(`${results.map((r) => r.message).join('\n')}\n`);
      }),
    ),
    'sudo labctl link set c1-nat inet --delay 40ms --jitter 10ms --loss 1%',
    'sudo labctl link set c0-nat inet --profile lte --loss 0%     # the profile without its loss',
    'sudo labctl link set c0 c0-nat --rate 1mbit --direction upstream',
    'sudo labctl link set --all --profile lte                     # every link of the lab',
  );

  example(
    labOption(
      link
        .command('reset')
        .description("remove a link's impairment (an ideal link, whatever the lab file declares), or every link's with --all")
        .argument('[a]', 'one end')
        .argument('[b]', 'the other end')
        .option('--all', 'every link of the lab'),
    )
      .option('--json', 'print the result as JSON')
      .action(
        action(async (a: string | undefined, b: string | undefined, opts: { all?: boolean; lab?: string; json?: boolean }) => {
          if (opts.all && a !== undefined) throw new UsageError('link reset: give either two members (A B) or --all, not both');
          if (!opts.all && (a === undefined || b === undefined)) throw new UsageError('link reset: give the two members the link joins (A B), or --all');
          requireRoot('link reset', ROOT_WHY);
          const { effectiveShaping, linkTarget, setLinks } = await import('../apply/links.js');
          const { NO_SHAPING, shapingIsEmpty } = await import('../lab/impairment.js');
          const { findLink } = await import('../lab/resolve-links.js');
          const target = linkTarget(opts.lab, opts.all ? [] : [a!, b!]);
          let links = target.lab.links.filter((l) => !shapingIsEmpty(effectiveShaping(l, target.state)));
          if (!opts.all) {
            const found = findLink(target.lab, a!, b!);
            if ('problem' in found) refuse([{ path: 'A B', message: found.problem }]);
            links = [target.lab.links[found.index]!];
          }
          if (!links.length) {
            const message = `no link of lab "${target.lab.name}" has an impairment; nothing changed`;
            return opts.json ? printJson([]) : process.stdout.write(`${message}\n`);
          }
          const results = await setLinks(
            target,
            links.map((l) => ({ link: l, shaping: NO_SHAPING })),
          );
          if (opts.json) return printJson(results);
          process.stdout.write(`${results.map((r) => r.message).join('\n')}\n`);
        }),
      ),
    'sudo labctl link reset c1-nat inet',
    'sudo labctl link reset --all',
  );

  for (const [verb, what] of [
    ['down', 'an outage: both ends of the link down (carrier lost); conntrack entries and NAT mappings stay and age on their own timers'],
    ['up', "end an outage: both ends up, and the plan's routes of both namespaces put back"],
  ] as const) {
    example(
      labOption(link.command(verb).description(what).argument('<a>', 'one end').argument('<b>', 'the other end')).action(
        action(async (a: string, b: string, opts: { lab?: string }) => {
          requireRoot(`link ${verb}`, ROOT_WHY);
          const { linkDown, linkTarget, linkUp } = await import('../apply/links.js');
          const { findLink } = await import('../lab/resolve-links.js');
          const target = linkTarget(opts.lab, [a, b]);
          const found = findLink(target.lab, a, b);
          if ('problem' in found) refuse([{ path: 'A B', message: found.problem }]);
          const theLink = target.lab.links[found.index]!;
          process.stdout.write(`${verb === 'down' ? await linkDown(target, theLink) : await linkUp(target, theLink)}\n`);
        }),
      ),
      `sudo labctl link ${verb} c1-nat inet`,
    );
  }
}
