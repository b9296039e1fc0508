// zod/mini carries no messages of its own ("Invalid input" for everything); load zod's
// English ones once, for every schema labctl has (lab files, image recipes, scenarios).
// Also the field paths and type names their messages share.
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());

/** A zod issue path as a field path in the file: `sites[0].nat.type`. */
export function zodPath(path: PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** What a wrongly typed value should have been, in a YAML file's terms (lab files and scenarios add their own kinds). */
export const EXPECTED_TYPES: Record<string, string> = {
  number: 'a number',
  boolean: 'true or false',
  string: 'a string',
  array: 'a list',
  object: 'a mapping',
};
