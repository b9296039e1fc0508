// `labctl net ...` and `labctl validate`: the lab network alone.
import type { Command } from 'commander';
import { action, example, printJson, requireRoot } from './common.js';
import type { Lab } from '../lab/model.js';
import { UsageError } from '../util/errors.js';
import { loadLab } from '../lab/load.js';

export function registerNetCommands(program: Command): void {
  example(
    program
      .command('validate')
      .description('check a lab file and print its resolved plan summary; changes nothing')
      .argument('[file]', 'lab file, or the name of a built-in lab', 'article')
      .option('--json', 'print the resolved lab as JSON')
      .action(
        action(async (file: string, opts: { json?: boolean }) => {
          const lab = loadLab(file);
          // What `up` checks before it creates anything: the host paths its machines bind and copy.
          const { checkSoftwareSources } = await import('../lab/sources.js');
          checkSoftwareSources(lab);
          if (opts.json) return printJson(lab);
          const lines = [
            `${lab.source}: lab "${lab.name}" is valid`,
            `  internet ${lab.internet.name} (${lab.internet.netns})`,
            ...lab.nats.map(
              (n) =>
                `  nat ${n.name} (${n.netns}): ${[n.behaviour.profile && `profile ${n.behaviour.profile},`, n.behaviour.declaredAs, 'mapping'].filter(Boolean).join(' ')} ${n.behaviour.mapping}, filtering ${n.behaviour.filtering}; outside ${n.outside.address}/${n.outside.prefix} on ${n.outside.ifname}, inside ${n.lan.address}/${n.lan.prefix} on ${n.lan.ifname}`,
            ),
            ...lab.nodes.map(
              (n) => `  node ${n.name} (${n.netns}): ${n.link.address}/${n.link.prefix} on ${n.link.ifname} via ${n.link.gateway} (${n.router})`,
            ),
          ];
          process.stdout.write(`${lines.join('\n')}\n`);
        }),
      ),
    'labctl validate machines/article.yaml',
    'labctl validate my-lab.yaml --json',
  );

  const net = example(
    program.command('net').description('the lab network alone: namespaces, veths, routes and NAT rules (no machines)'),
    'sudo labctl net up',
    'sudo labctl net status',
    'labctl net rules c1-nat',
    'sudo labctl net down',
  );
  example(
    net
      .command('up')
      .description("create the lab's namespaces, veths, addresses, routes, sysctls and NAT rules (idempotent)")
      .argument('[file]', 'lab file, or the name of a built-in lab', 'article')
      .option('--json', 'print the result as JSON')
      .action(
        action(async (file: string, opts: { json?: boolean }) => {
          const lab = loadLab(file);
          requireRoot('net up', 'it creates network namespaces');
          const { netUp } = await import('../apply/net.js');
          const result = await netUp(lab);
          if (opts.json) printJson(result);
          else process.stdout.write(`${result.message}\n`);
        }),
      ),
    'sudo labctl net up',
    'sudo labctl net up machines/article.yaml',
  );
  example(
    net
      .command('down')
      .description('remove exactly what `net up` created for this lab (also after a crashed up)')
      .argument('[file]', 'lab file, built-in lab, or the name of a lab that is up', 'article')
      .option('--force', "also delete namespaces with this lab's names that no state file records")
      .option('--json', 'print the result as JSON')
      .action(
        action(async (file: string, opts: { force?: boolean; json?: boolean }) => {
          requireRoot('net down', 'it deletes network namespaces');
          const { readState } = await import('../host/state.js');
          const { netDown } = await import('../apply/net.js');
          let lab: Lab | undefined;
          let name = file;
          if (!readState(file)) {
            lab = loadLab(file);
            name = lab.name;
          }
          const result = await netDown(name, { ...(lab ? { lab } : {}), ...(opts.force ? { force: true } : {}) });
          if (opts.json) printJson(result);
          else process.stdout.write(`${result.message}\n`);
        }),
      ),
    'sudo labctl net down',
  );
  example(
    net
      .command('status')
      .description('show the namespaces, interfaces, addresses and NAT modes of labs that are up')
      .argument('[lab]', 'only this lab (default: every lab that is up)')
      .option('--json', 'print as JSON')
      .action(
        action(async (lab: string | undefined, opts: { json?: boolean }) => {
          const { netStatus, formatNetStatus } = await import('../report/net-status.js');
          const labs = await netStatus(lab);
          if (opts.json) printJson(labs);
          else process.stdout.write(formatNetStatus(labs));
        }),
      ),
    'sudo labctl net status',
    'sudo labctl net status article --json',
  );
  example(
    net
      .command('flush')
      .description('make NAT routers forget their state: conntrack entries and learned mappings and peers')
      .argument('[file]', 'lab file, or the name of a built-in lab', 'article')
      .option('--nat <name>', 'only this NAT router')
      .action(
        action(async (file: string, opts: { nat?: string }) => {
          const lab = loadLab(file);
          requireRoot('net flush', "it changes conntrack and nftables state inside the lab's namespaces");
          const nats = lab.nats.filter((n) => !opts.nat || n.name === opts.nat);
          if (nats.length === 0) throw new UsageError(`lab "${lab.name}" has no NAT "${opts.nat}" (it has ${lab.nats.map((n) => n.name).join(', ')})`);
          const { flushNat } = await import('../apply/nat-state.js');
          await Promise.all(nats.map(flushNat));
          process.stdout.write(`flushed ${nats.map((n) => n.name).join(', ')}\n`);
        }),
      ),
    'sudo labctl net flush',
    'sudo labctl net flush --nat c1-nat',
  );
  example(
    net
      .command('rules')
      .description("print the nftables ruleset labctl loads into a NAT router's namespace")
      .argument('<nat>', 'NAT name, e.g. c1-nat')
      .argument('[file]', 'lab file, or the name of a built-in lab', 'article')
      .action(
        action(async (natName: string, file: string) => {
          const lab = loadLab(file);
          const nat = lab.nats.find((n) => n.name === natName);
          if (!nat) throw new UsageError(`lab "${lab.name}" has no NAT "${natName}" (it has ${lab.nats.map((n) => n.name).join(', ')})`);
          const { compileNatRuleset } = await import('../nat/compile.js');
          process.stdout.write(compileNatRuleset(nat));
        }),
      ),
    'labctl net rules c1-nat',
  );
}
