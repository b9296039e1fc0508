import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseNotify, receiverArgv } from '../../src/machine/notify.js';

describe('readiness notifications from systemd-nspawn', () => {
  it('finds READY=1 and the leader pid in datagrams that arrive back to back', () => {
    assert.deepEqual(parseNotify('STATUS=Container running.\nX_NSPAWN_LEADER_PID=15439'), { ready: false, leaderPid: 15439 });
    assert.deepEqual(parseNotify('STATUS=Container running.\nX_NSPAWN_LEADER_PID=15439READY=1\nSTATUS=Container running: Ready.'), {
      ready: true,
      leaderPid: 15439,
    });
    assert.deepEqual(parseNotify(''), { ready: false });
  });

  it('gives socat the socket as one argument and refuses paths socat would parse as options', () => {
    assert.deepEqual(receiverArgv('/run/labctl/article/c0.notify', 65), [
      'socat',
      '-u',
      '-T',
      '65',
      'UNIX-RECV:/run/labctl/article/c0.notify,unlink-early,unlink-close',
      'STDOUT',
    ]);
    for (const bad of ['/run/x,fork/c0.notify', '/run/x y/c0.notify', '/run/a:b/c0.notify', '/run/a!!b']) {
      assert.throws(() => receiverArgv(bad, 5), /socat would misread/);
    }
  });
});
