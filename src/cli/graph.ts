// `labctl graph [FILE|LAB] [--format mermaid|dot|svg|json] [-o FILE]`: a picture of a lab,
// drawn from its lab file alone (no root, nothing on the host is read or changed, apart
// from the state file that names the lab file of a lab that is up).
import { writeFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { loadLab } from '../lab/load.js';
import type { Lab } from '../lab/model.js';
import { GRAPH_FORMATS, type GraphFormat, labGraph, renderGraph } from '../report/graph.js';
import { action, example } from './common.js';

const looksLikePath = (arg: string) => arg.includes('/') || arg.endsWith('.yaml') || arg.endsWith('.yml');

/**
 * FILE, a built-in lab, or the name of a lab that is up: then the file it came up from, as
 * its state names it (as `down` and `conntrack` read a name). Without root the state is
 * unreadable (the run dir is root's), and the name is a built-in lab's or a file's.
 */
async function labFor(arg: string): Promise<Lab> {
  let source: string | undefined;
  if (!looksLikePath(arg)) {
    const { readState } = await import('../host/state.js');
    try {
      source = readState(arg)?.source;
    } catch {
      /* not root */
    }
  }
  return loadLab(source ?? arg);
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
          const text = await renderGraph(labGraph(await labFor(file)), opts.format);
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
