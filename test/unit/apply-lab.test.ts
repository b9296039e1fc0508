// What a second `labctl up` of a lab that is already up says: nothing changed, with or
// without machines, and which image or backend it runs when another was asked for.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alreadyUpMessage } from '../../src/apply/lab.js';
import type { MachineState } from '../../src/host/state.js';

const machine = (name: string, over: Partial<MachineState> = {}): MachineState => ({
  name,
  netns: `ns-${name}`,
  image: 'bookworm',
  directory: '/var/lib/labctl/images/bookworm',
  backend: 'direct',
  ...over,
});
const four = ['c0', 'c0-nat', 'c1', 'c1-nat'].map((n) => machine(n));

describe('alreadyUpMessage', () => {
  test('the same image and backend (or none asked for): nothing changed', () => {
    assert.equal(alreadyUpMessage('article', four, 'bookworm'), 'lab "article" is already up with 4 machines; nothing changed');
    assert.equal(alreadyUpMessage('article', four, 'bookworm', 'direct'), 'lab "article" is already up with 4 machines; nothing changed');
  });

  test('a lab without machines is up too', () => {
    assert.equal(alreadyUpMessage('bare', [], 'bookworm', 'systemd'), 'lab "bare" is already up with no machines; nothing changed');
  });

  test('another image or backend than the lab runs: says which it runs, and that down comes first', () => {
    assert.equal(
      alreadyUpMessage('article', four, 'jammy'),
      'lab "article" is already up with 4 machines; nothing changed: it uses image bookworm (not jammy); `labctl down` first to change that',
    );
    assert.equal(
      alreadyUpMessage('article', four, 'bookworm', 'systemd'),
      'lab "article" is already up with 4 machines; nothing changed: it uses the direct backend (not systemd); `labctl down` first to change that',
    );
    assert.equal(
      alreadyUpMessage('article', four, 'jammy', 'systemd'),
      'lab "article" is already up with 4 machines; nothing changed: it uses image bookworm (not jammy) and the direct backend (not systemd); `labctl down` first to change that',
    );
  });

  test('machines of their own images: each compared with its own, and the one that differs named', () => {
    const mixed = [machine('dev', { image: 'alt' }), machine('srv')];
    const wanted = new Map([
      ['dev', 'alt'],
      ['srv', 'bookworm'],
    ]);
    assert.equal(alreadyUpMessage('mixed', mixed, wanted), 'lab "mixed" is already up with 2 machines; nothing changed');
    assert.equal(
      alreadyUpMessage('mixed', mixed, new Map([...wanted, ['srv', 'noble']])),
      'lab "mixed" is already up with 2 machines; nothing changed: it uses image bookworm (not noble) in srv; `labctl down` first to change that',
    );
  });
});
