// Forgetting what NAT routers have learned: conntrack entries and the learned mappings
// and peers (and their owners). Rules only see a flow's first packet, so experiments that should start from
// a fresh NAT (no mapping, no permitted peer) flush first.
import { run } from '../exec/run.js';
import type { Nat } from '../lab/model.js';
import { FLUSH_LEARNED_STATE } from '../nat/compile.js';
import { inNetns } from '../host/netns.js';

export async function flushNat(nat: Nat): Promise<void> {
  await run(inNetns(nat.netns, ['nft', '-f', '-']), {
    step: `flush learned mappings in ${nat.netns}`,
    input: FLUSH_LEARNED_STATE,
  });
  // conntrack -F exits 1 with "0 flow entries" on an empty table on some versions.
  await run(inNetns(nat.netns, ['conntrack', '-F']), { step: `flush conntrack in ${nat.netns}`, allowFailure: true });
}
