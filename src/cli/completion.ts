// `labctl completion bash|zsh|fish` prints a shell completion script, and the hidden
// `labctl __complete KIND` prints what the script asks for at each Tab: lab names, the
// machines and members of labs that are up, built images, shipped recipes.
//
// The commands, options and arguments come from the commander program itself (walked
// here, the image commands included), so the script is always the one of the labctl that
// printed it; what changes while a shell runs (labs up, images built) is asked of labctl
// (__complete) each time, so the script stays small and never stale.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Argument, type Command, type Option } from 'commander';
import { bashScript, fishScript, zshScript } from './completion-scripts.js';

/**
 * What an argument or an option's value completes to: nothing; files; directories; lab
 * names (built-in and up) and lab files; machines, members (of labs that are up), images
 * or recipes, which `labctl __complete KIND` prints; or fixed choices ("choices:a,b").
 */
export type ValueKind = 'none' | 'files' | 'dirs' | 'labs' | DynamicKind | `choices:${string}`;
export const DYNAMIC_KINDS = ['labs', 'machines', 'members', 'images', 'recipes'] as const;
type DynamicKind = (typeof DYNAMIC_KINDS)[number];

export interface OptionSpec {
  /** -V, --version */
  names: string[];
  description: string;
  /** What its value completes to; undefined for an option that takes none. */
  value?: ValueKind;
}

export interface CommandSpec {
  /** The words that lead to it: "" for labctl itself, "net up". */
  path: string;
  commands: { name: string; description: string }[];
  options: OptionSpec[];
  /** Positional arguments in order; `variadic`: the last one repeats. */
  args: ValueKind[];
  variadic: boolean;
}

/** An argument's kind by its name: [file] is a lab file or built-in lab, <machine> a machine that runs... */
const ARGUMENT_KINDS: Record<string, ValueKind> = {
  file: 'labs',
  lab: 'labs',
  machine: 'machines',
  nat: 'members',
  'name|file': 'recipes',
  command: 'none',
};
/** Where a name alone does not tell: "PATH ARGUMENT". */
const ARGUMENTS_AT: Record<string, ValueKind> = {
  'image rm name': 'images',
  'image mount name': 'images',
  'image umount name': 'images',
};
const OPTION_KINDS: Record<string, ValueKind> = {
  '--image': 'images',
  '--nat': 'members',
};

function optionKind(option: Option): ValueKind | undefined {
  if (!option.required && !option.optional) return undefined;
  if (option.argChoices) return `choices:${option.argChoices.join(',')}`;
  const known = option.long ? OPTION_KINDS[option.long] : undefined;
  if (known) return known;
  // Otherwise by its placeholder: --data-dir <dir>, --out <file>.
  const placeholder = /[<[]([^>\]]+)[>\]]/.exec(option.flags)?.[1] ?? '';
  if (/dir/.test(placeholder)) return 'dirs';
  if (/file|path/.test(placeholder)) return 'files';
  return 'none';
}

function argumentKind(path: string, arg: Argument, siblings: string[] | undefined): ValueKind {
  if (arg.argChoices) return `choices:${arg.argChoices.join(',')}`;
  // `labctl help COMMAND`: the commands beside it.
  if (siblings) return `choices:${siblings.join(',')}`;
  return ARGUMENTS_AT[`${path} ${arg.name()}`] ?? ARGUMENT_KINDS[arg.name()] ?? 'files';
}

/** Every command of the program, its subcommands, options and arguments, as the help shows them (hidden ones left out). */
export function completionSpecs(program: Command): CommandSpec[] {
  const help = program.createHelp();
  const specs: CommandSpec[] = [];
  // parent: of a help command (commander's own, which knows no parent), whose commands it takes.
  const walk = (cmd: Command, path: string, parent?: Command) => {
    const subcommands = help.visibleCommands(cmd);
    const args = cmd.registeredArguments;
    const siblings =
      cmd.name() === 'help' && parent
        ? help
            .visibleCommands(parent)
            .map((c) => c.name())
            .filter((n) => n !== 'help')
        : undefined;
    specs.push({
      path,
      commands: subcommands.map((c) => ({ name: c.name(), description: firstSentence(c.description()) })),
      options: help.visibleOptions(cmd).map((o) => {
        const value = optionKind(o);
        return { names: [o.short, o.long].filter((n): n is string => !!n), description: firstSentence(o.description), ...(value ? { value } : {}) };
      }),
      args: args.map((a) => argumentKind(path, a, siblings)),
      variadic: args.at(-1)?.variadic ?? false,
    });
    for (const c of subcommands) walk(c, path ? `${path} ${c.name()}` : c.name(), cmd);
  };
  walk(program, '');
  return specs;
}

/** A description shortened for a completion menu: up to its first colon or semicolon outside parentheses, 80 characters at most. */
export function firstSentence(text: string): string {
  let depth = 0;
  let end = text.length;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth = Math.max(0, depth - 1);
    else if ((ch === ':' || ch === ';') && depth === 0 && /\s/.test(text[i + 1] ?? '')) {
      end = i;
      break;
    }
  }
  const s = text.slice(0, end).trim();
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

export function completionScript(shell: Shell, program: Command): string {
  const specs = completionSpecs(program);
  const name = program.name();
  if (shell === 'bash') return bashScript(name, specs);
  if (shell === 'zsh') return zshScript(name, specs);
  return fishScript(name, specs);
}

/** What `labctl __complete KIND` prints: one word a line, nothing when there is nothing (or it cannot be read, e.g. the run dir as a user). */
export async function completionValues(kind: DynamicKind): Promise<string[]> {
  const { allStates } = await import('../host/state.js');
  const states = () => {
    try {
      return allStates();
    } catch {
      return [];
    }
  };
  switch (kind) {
    case 'labs': {
      let builtin: string[] = [];
      try {
        builtin = readdirSync(BUILTIN_LABS_DIR)
          .filter((f) => f.endsWith('.yaml') && !f.endsWith('.test.yaml')) // *.test.yaml: scenarios (labctl test), not labs
          .map((f) => f.slice(0, -'.yaml'.length));
      } catch {
        /* no machines/ beside this labctl */
      }
      return unique([...builtin, ...states().map((s) => s.lab)]);
    }
    case 'machines':
      return unique(states().flatMap((s) => (s.machines ?? []).map((m) => m.name)));
    case 'members':
      return unique(states().flatMap((s) => s.namespaces.map((n) => n.owner)));
    case 'images': {
      const { listImages } = await import('../image/manage.js');
      try {
        return unique((await listImages()).filter((i) => i.state !== 'building').map((i) => i.name));
      } catch {
        return [];
      }
    }
    case 'recipes': {
      const { listRecipeNames } = await import('../image/recipe.js');
      return listRecipeNames();
    }
  }
}

/**
 * The built-in labs' folder, machines/ at the package's root: found the way lab/load.ts
 * finds a built-in lab, two levels above this module (src/cli, dist/cli and dist/bundle
 * alike). test/unit/completion.test.ts checks that every name listed here loads.
 */
const BUILTIN_LABS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'machines');

function unique(words: string[]): string[] {
  return [...new Set(words)].sort();
}

export function registerCompletionCommands(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script: commands, options, lab names, the machines and members of labs that are up, images')
    .addArgument(new Argument('<shell>', 'the shell').choices(SHELLS))
    .addHelpText(
      'after',
      `
Load it in this shell, or for every new one:
  $ source <(labctl completion bash)        # bash; or: labctl completion bash > /etc/bash_completion.d/labctl
  $ source <(labctl completion zsh)         # zsh, after compinit; or save it as _labctl in a directory of $fpath
  $ labctl completion fish | source         # fish; or: labctl completion fish > ~/.config/fish/completions/labctl.fish
`,
    )
    .action((shell: Shell) => {
      process.stdout.write(completionScript(shell, program));
    });
  // What the scripts call at each Tab. Hidden: not a command for people.
  program
    .command('__complete', { hidden: true })
    .argument('<kind>', DYNAMIC_KINDS.join('|'))
    .action(async (kind: string) => {
      if (!(DYNAMIC_KINDS as readonly string[]).includes(kind)) return;
      const words = await completionValues(kind as DynamicKind);
      if (words.length) process.stdout.write(`${words.join('\n')}\n`);
    });
}
