// `labctl check` over delayed and lossy links (src/check/impaired.ts): timings from a
// measured round trip, and filtering judged over simulated loss, where a dropped answer
// must not pass for filtering nor filtering for loss.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Dependency } from '../../src/lab/behaviour.js';
import {
  droppedOrLost,
  filteringUnderLoss,
  lossUpperBound,
  natIdleSeconds,
  pathIsLossy,
  pathTiming,
  sendTime,
  UNSURE_CHANCE,
  withFilteringUnderLoss,
} from '../../src/check/impaired.js';
import { analyse } from '../../src/check/classify.js';
import { LAB_RETRANSMIT } from '../../src/stun/client.js';
import type { FilteringResult, Observation } from '../../src/stun/probes.js';

/** A small seeded PRNG (mulberry32): the simulations are the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('an ideal link keeps the lab timings; a 100 ms round trip gets RTO 300 ms and a longer sentinel grace', () => {
  const ideal = pathTiming({ samples: Array(20).fill(0.4) }, 3);
  assert.equal(ideal.retransmit.rto, LAB_RETRANSMIT.rto);
  assert.equal(ideal.lost, 0);
  assert.equal(ideal.filteringTries, 2);
  const slow = pathTiming({ samples: [...Array(19).fill(100), null] }, 3);
  assert.equal(slow.rttMs, 100);
  assert.equal(slow.retransmit.rto, 300);
  assert.equal(slow.lost, 1);
  assert.ok(slow.sentinelGraceMs >= 250);
  // A busy host's late answers: the path's round trip is the shortest, the timeout follows the median.
  const busy = pathTiming({ samples: [120, 101, 480, 470, 900] }, 3);
  assert.deepEqual([busy.rttMs, busy.medianMs, busy.retransmit.rto], [101, 470, 1410]);
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => sendTime(slow.retransmit, i)),
    [0, 300, 900, 2100],
  );
});

test('heavier loss asks for more tries of each filtering request', () => {
  const light = pathTiming({ samples: Array(20).fill(10) }, 3);
  const heavy = pathTiming({ samples: [...Array(10).fill(10), ...Array(10).fill(null)] }, 3);
  assert.ok(heavy.filteringTries > light.filteringTries, `${heavy.filteringTries} vs ${light.filteringTries}`);
  assert.ok(lossUpperBound(0, 20) <= 0.15 && lossUpperBound(10, 20) > 0.5);
});

test('a lifetime check counts one round trip more than the client clock, wherever the delay is', () => {
  // Inside one-way i, outside one-way o: the NAT saw the mapping's answer i before the client
  // did, and sees the check's answer i + 2o after the check left.
  for (const [i, o] of [
    [0, 150],
    [150, 0],
    [50, 100],
  ] as const) {
    const clientIdle = 10_000;
    const natIdle = clientIdle + i + 2 * o + i;
    assert.equal(natIdleSeconds(clientIdle, 2 * i + 2 * o), natIdle / 1000);
  }
});

test('one answer over all runs: in when any run got it, dropped when loss cannot explain the misses, else unsure', () => {
  assert.equal(droppedOrLost([false, true, false], 2, { sent: 20, lost: 1 }).value, 'in');
  assert.equal(droppedOrLost([false, false, false], 2, { sent: 20, lost: 0 }).value, 'dropped');
  const unsure = droppedOrLost([false, false, false], 2, { sent: 20, lost: 10 });
  assert.equal(unsure.value, 'unsure');
  assert.match(unsure.detail, /lost 10 of 20 round trips/);
});

const obs = (got: boolean, from = { address: '203.0.113.1', port: 3478 }): Observation =>
  got ? { to: { address: '203.0.113.1', port: 3478 }, mapped: { address: '100.64.1.1', port: 4000 }, from } : { to: { address: '203.0.113.1', port: 3478 } };

/** What one filtering run sees through a NAT with this filtering, when each round trip is lost with chance q and each request goes out `tries` times. */
function simulateRun(filtering: Dependency, q: number, tries: number, rand: () => number): FilteringResult {
  const survives = () => Array.from({ length: tries }, () => rand() >= q).some(Boolean);
  const allowed = { port: filtering !== 'address-and-port-dependent', address: filtering === 'endpoint-independent' };
  const sameGot = Array.from({ length: 5 }, () => rand() >= q).some(Boolean);
  return {
    local: 40000,
    same: obs(sameGot),
    changePort: obs(allowed.port && survives(), { address: '203.0.113.1', port: 3479 }),
    changeAddress: obs(allowed.address && survives(), { address: '203.0.113.2', port: 3478 }),
    changeBoth: obs(allowed.address && survives(), { address: '203.0.113.2', port: 3479 }),
  };
}

const DEPS: Dependency[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];

test('simulated 1% loss each way (2% per round trip): every filtering is judged right', () => {
  const rand = rng(14);
  let trials = 0;
  for (const dep of DEPS) {
    for (let k = 0; k < 500; k++) {
      const samples = Array.from({ length: 20 }, () => (rand() < 0.02 ? null : 100));
      const timing = pathTiming({ samples }, 3);
      const runs = Array.from({ length: 3 }, () => simulateRun(dep, 0.02, timing.filteringTries, rand));
      const f = filteringUnderLoss(runs, timing.filteringTries, timing);
      assert.equal(f.value, dep, `trial ${k}: ${f.detail}`);
      trials++;
    }
  }
  assert.equal(trials, 1500);
});

test('simulated heavy loss (40% per round trip): never a wrong verdict; unsure says so with the evidence', () => {
  const rand = rng(7);
  let unsure = 0;
  for (const dep of DEPS) {
    for (let k = 0; k < 300; k++) {
      const samples = Array.from({ length: 20 }, () => (rand() < 0.4 ? null : 100));
      const timing = pathTiming({ samples }, 3);
      const runs = Array.from({ length: 3 }, () => simulateRun(dep, 0.4, timing.filteringTries, rand));
      const f = filteringUnderLoss(runs, timing.filteringTries, timing);
      if (f.value === 'unknown') {
        unsure++;
        assert.match(f.detail, /loss leaves it unsure: .*lost \d+ of 20 round trips/);
      } else assert.equal(f.value, dep, f.detail);
    }
  }
  // Endpoint-independent filtering lets everything in, so it is never unsure; the others often are.
  assert.ok(unsure > 0, 'heavy loss never left a test unsure');
  assert.ok(UNSURE_CHANCE <= 1e-3);
});

test('a lossy path replaces the per-run filtering verdict (runs that disagree are not "inconsistent"), and unsure is no match', () => {
  const lossy = { sent: 20, lost: 1, rttMs: 100 };
  // Address-dependent, but run 2 lost the other-port answer: per run, that is inconsistent.
  const runs: FilteringResult[] = [
    { local: 1, same: obs(true), changePort: obs(true, { address: '203.0.113.1', port: 3479 }), changeAddress: obs(false), changeBoth: obs(false) },
    { local: 2, same: obs(true), changePort: obs(false), changeAddress: obs(false), changeBoth: obs(false) },
    {
      local: 3,
      same: { ...obs(true), transmissions: 2 },
      changePort: obs(true, { address: '203.0.113.1', port: 3479 }),
      changeAddress: obs(false),
      changeBoth: obs(false),
    },
  ];
  assert.ok(pathIsLossy({ lost: 0 }, runs), 'a retransmitted request shows loss');
  const declared = { mapping: 'endpoint-independent' as const, filtering: 'address-dependent' as const };
  const mapping = [{ local: 9, observations: Array(4).fill(obs(true)) }];
  const base = { ...analyse({ mapping, filtering: runs, hairpin: [] }, declared), declared };
  assert.equal(base.measured.filtering, 'inconsistent');
  const fixed = withFilteringUnderLoss(base, filteringUnderLoss(runs, 2, lossy));
  assert.equal(fixed.measured.filtering, 'address-dependent');
  assert.equal(fixed.rows.find((r) => r.test === 'filtering')?.match, true);
  assert.equal(fixed.rows.find((r) => r.test === 'type')?.match, true);
  assert.match(fixed.notes.join('\n'), /lost round trips/);

  const unsure = withFilteringUnderLoss(base, filteringUnderLoss(runs, 1, { sent: 20, lost: 12, rttMs: 100 }));
  assert.equal(unsure.measured.filtering, 'unknown');
  assert.equal(unsure.match, false);
  assert.match(unsure.rows.find((r) => r.test === 'filtering')!.evidence, /unsure/);
});
