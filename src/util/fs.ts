// Listing a directory where a missing or unreadable one simply means "nothing there".
import { readdirSync } from 'node:fs';

/** The names in dir, or none when it does not exist or cannot be read. */
export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
