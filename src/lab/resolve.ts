// From a lab file's text to the resolved Lab: schema check, semantic checks, defaults and
// address planning. Pure: reads nothing but its arguments, changes nothing.
//
// Every problem becomes an InputIssue naming the field path and the reason. Resolution runs
// in stages, one function each, and reports every problem of the first stage that has any:
// each later stage reads what the earlier ones resolved (a subnet plan needs a sound site
// tree, addresses need their subnets), and checking it on top of a broken one would report
// made-up errors. The stages, in order:
//   schema                 checkSchema (schema.ts): YAML, types, ranges, unknown keys
//   names and site tree    resolveSiteTree (resolve-names.ts): unique names, upstreams, no loops
//   subnets                planSubnets, then checkChildUplinks (resolve-subnets.ts)
//   addresses              planAddresses (resolve-addresses.ts)
//   NAT behaviour          resolveBehaviours (resolve-behaviour.ts)
//   interface names        wireLab (resolve-wiring.ts): links, and names unique per namespace
//   link impairments       resolveLinkImpairments (resolve-links.ts): `links:` on the links wired
//   machine software       resolveSoftware (resolve-software.ts), last (parseLab): images, binds, files, env, services, commands
import type { Lab } from './model.js';
import { type InputIssue, UsageError } from '../util/errors.js';
import { resolveBehaviours } from './resolve-behaviour.js';
import { planAddresses } from './resolve-addresses.js';
import { resolveSiteTree } from './resolve-names.js';
import { checkChildUplinks, planSubnets } from './resolve-subnets.js';
import { resolveLinkImpairments } from './resolve-links.js';
import { wireLab } from './resolve-wiring.js';
import { checkSchema, type LabFile } from './schema.js';
import { resolveSoftware } from './resolve-software.js';

/** How a stage reports one problem: the field path (`sites[0].lan.subnet`, '' for the whole file) and the reason. */
export type Report = (path: string, message: string) => void;

/** Parses YAML text and resolves it; throws UsageError (exit 2) with every problem of the first failing stage. */
export function parseLab(text: string, source: string): Lab {
  const file = checkSchema(text, source);
  // The last stage, on the lab that the network's stages resolved: what runs in its machines.
  return stage(source, (report) => resolveSoftware(file, resolveLab(file, source), report));
}

function resolveLab(file: LabFile, source: string): Lab {
  const tree = stage(source, (report) => resolveSiteTree(file, report));
  const subnets = stage(source, (report) => planSubnets(tree, report));
  stage(source, (report) => checkChildUplinks(tree, subnets, report));
  const addresses = stage(source, (report) => planAddresses(tree, subnets, report));
  const behaviours = stage(source, (report) => resolveBehaviours(tree, addresses, report));
  const wired = stage(source, (report) => wireLab(file, source, tree, subnets, addresses, behaviours, report));
  return stage(source, (report) => resolveLinkImpairments(file, wired, report));
}

/** Runs one stage; when it reported problems, throws them all, and what it returned is never used. */
function stage<T>(source: string, run: (report: Report) => T): T {
  const issues: InputIssue[] = [];
  const out = run((path, message) => issues.push({ path, message }));
  if (issues.length) throw UsageError.forFile(source, issues);
  return out;
}
