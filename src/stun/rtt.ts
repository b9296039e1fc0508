// The `rtt` probe: what `labctl check` measures of a path before it probes it (see
// src/check/impaired.ts). Single-shot Binding requests, no retransmission, so that a lost
// round trip shows as lost and a round trip is the path's alone.
import { StunSocket } from './client.js';
import type { TransportAddress } from './message.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** count requests to `to`, spacedMs apart, each waiting up to waitMs: each one's round trip in ms, or null when no answer came. */
export async function rttProbe(args: { to: TransportAddress; count?: number; spacedMs?: number; waitMs?: number }): Promise<{ samples: (number | null)[] }> {
  const s = await StunSocket.open();
  try {
    const count = args.count ?? 20;
    const waitMs = args.waitMs ?? 1500;
    // One request first, not counted: the first packet of a path waits for ARP at every hop
    // (and ARP crosses a delayed link too), and requests sent meanwhile queue behind it.
    await s.binding(args.to, { retransmit: { rto: 200, maxTransmits: 4, finalWaitFactor: 4 } });
    const pending: Promise<number | null>[] = [];
    for (let i = 0; i < count; i++) {
      pending.push(s.binding(args.to, { retransmit: { rto: waitMs, maxTransmits: 1, finalWaitFactor: 1 } }).then((r) => (r ? r.rttMs : null)));
      await sleep(args.spacedMs ?? 10);
    }
    return { samples: await Promise.all(pending) };
  } finally {
    s.close();
  }
}
