// `nft -c` of compiled rulesets in a throwaway network namespace (unshare --net: nft's
// check needs CAP_NET_ADMIN, and nothing is loaded): the kernel's own parser is the judge.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const NFT = '/usr/sbin/nft';

/** The rulesets nft refuses, each as `label: what nft said`; empty when it accepts them all. */
export async function nftRejects(rulesets: { label: string; text: string }[]): Promise<string[]> {
  const run = promisify(execFile);
  const dir = mkdtempSync(join(tmpdir(), 'labctl-nft-'));
  try {
    const failures: string[] = [];
    await Promise.all(
      rulesets.map(async ({ label, text }, i) => {
        const file = join(dir, `${i}.nft`);
        writeFileSync(file, text);
        try {
          await run('unshare', ['--net', NFT, '-c', '-f', file]);
        } catch (e) {
          failures.push(`${label}: ${(e as { stderr?: string }).stderr ?? String(e)}`);
        }
      }),
    );
    return failures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
