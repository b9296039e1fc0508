// `labctl graph [FILE|LAB] [--format mermaid|dot|svg|json] [-o FILE]`: a picture of a lab,
// drawn from its lab file alone (no root, nothing on the host is read or changed, apart
// from the state file that names the lab file of a lab that is up).
import { writeFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { loadLab } from '../lab/load.js';
import type { LabState } from '../host/state.js';
import type { Lab } from '../lab/model.js';
import { GRAPH_FORMATS, type GraphFormat, labGraph, renderGraph } from '../report/graph.js';
import { action, example } from './common.js';

const looksLikePath = (arg: string) => arg.includes('/') || arg.endsWith('.yaml') || arg.endsWith('.yml');

/**
 * FILE, a built-in lab, or the name of a lab that is up: then the file it came up from, as
 * its state names it (as `down` and `conntrack` read a name). Without root the state is
 * unreadable (the run dir is root's), and the name is a built-in lab's or a file's. The
 * state of the lab, when it is up from that very file: its live link changes are drawn.
 */
async function labFor(arg: string): Promise<{ lab: Lab; state?: LabState }> {
  const { readState } = await import('../host/state.js');
  const stateOf = (name: string) => {
    try {
      return readState(name);
    } catch {
      return undefined; // not root
    }
  };
  const named = looksLikePath(arg) ? undefined : stateOf(arg);
  const lab = loadLab(named?.source ?? arg);
  const state = named ?? stateOf(lab.name);
  return { lab, ...(state?.status === 'up' && state.source === lab.source ? { state } : {}) };
}

export function registerGraphCommand(program: Command): void {
  example(
    program
      .command('graph')
      .description(
        "draw a lab: every member, every link with its interface names and addresses, each NAT's behaviour; Mermaid (default), Graphviz DOT, SVG (needs graphviz) or JSON",
      )
      .argument('[file]', 'lab file, built-in lab, or the name of a lab that is up', 'article')
      .addOption(new Option('--format <format>', 'what to write').choices(GRAPH_FORMATS).default('mermaid'))
      .option('-o, --output <file>', 'write to FILE instead of standard output')
      .action(
        action(async (file: string, opts: { format: GraphFormat; output?: string }) => {
          const { lab, state } = await labFor(file);
          const text = await renderGraph(labGraph(lab, state), opts.format);
          if (opts.output) writeFileSync(opts.output, text);
          else process.stdout.write(text);
        }),
      ),
    "labctl graph                                # the article's lab as a Mermaid flowchart",
    'labctl graph machines/article.yaml --format dot | dot -Tpng -o article.png',
    'labctl graph my-lab.yaml --format svg -o my-lab.svg',
    'labctl graph article --format json',
  );
}
