// labctl's STUN server and client talking over loopback (127.0.0.1 and 127.0.0.2 are both
// on lo, so two addresses need no root): RFC 5780 CHANGE-REQUEST, RESPONSE-PORT,
// OTHER-ADDRESS, RESPONSE-ORIGIN, error responses, RFC 3489 clients, retransmission.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { StunServer } from '../../src/stun/server.js';
import { LAB_RETRANSMIT, retransmitSchedule, StunSocket, type RetransmitOptions } from '../../src/stun/client.js';

/** RFC 5389 section 7.2.1 defaults: gives up after 39.5 s. */
const RFC5389_RETRANSMIT: RetransmitOptions = { rto: 500, maxTransmits: 7, finalWaitFactor: 16 };
import { ATTR, bindingInfo, bindingRequest, checkFingerprint, decodeMessage, encodeMessage, MAGIC_COOKIE, METHOD_BINDING } from '../../src/stun/message.js';

const A1 = '127.0.0.1';
const A2 = '127.0.0.2';
let server: StunServer;
let P1 = 0;
let P2 = 0;
let P3 = 0;
let P4 = 0;
let client: StunSocket;
let other: StunSocket;

before(async () => {
  for (let attempt = 0; ; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 20000) * 2;
    try {
      server = await StunServer.start({
        addresses: [A1, A2],
        portPairs: [
          [base, base + 1],
          [base + 2, base + 3],
        ],
      });
      [P1, P2, P3, P4] = [base, base + 1, base + 2, base + 3];
      break;
    } catch (e) {
      if (attempt > 20) throw e;
    }
  }
  client = await StunSocket.open(0, A1);
  other = await StunSocket.open(0, A1);
});

after(() => {
  client?.close();
  other?.close();
  server?.close();
});

test('plain Binding: mapped address, RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE, FINGERPRINT', async () => {
  const r = await client.binding({ address: A1, port: P1 });
  assert.ok(r?.ok);
  assert.deepEqual(r.reflexive, { address: A1, port: client.port });
  assert.deepEqual(r.info.xorMapped, r.info.mapped, 'XOR-MAPPED-ADDRESS and MAPPED-ADDRESS agree');
  assert.deepEqual(r.info.responseOrigin, { address: A1, port: P1 });
  assert.deepEqual(r.from, { address: A1, port: P1 });
  assert.deepEqual(r.info.otherAddress, { address: A2, port: P2 });
  assert.match(r.info.software ?? '', /labctl/);
  assert.equal(r.message.attributes.at(-1)?.type, ATTR.FINGERPRINT);
});

test('OTHER-ADDRESS is relative to where the request arrived', async () => {
  const r = await client.binding({ address: A2, port: P2 });
  assert.deepEqual(r?.info.otherAddress, { address: A1, port: P1 });
  const r2 = await client.binding({ address: A1, port: P2 });
  assert.deepEqual(r2?.info.otherAddress, { address: A2, port: P1 });
});

for (const [changeIp, changePort, addr, port] of [
  [true, true, A2, 'P2'],
  [true, false, A2, 'P1'],
  [false, true, A1, 'P2'],
] as const) {
  test(`CHANGE-REQUEST ${changeIp ? 'ip' : ''}${changeIp && changePort ? '+' : ''}${changePort ? 'port' : ''}: the response leaves from ${addr}:${port}`, async () => {
    const r = await client.binding({ address: A1, port: P1 }, { changeIp, changePort });
    assert.ok(r?.ok);
    const want = { address: addr, port: port === 'P1' ? P1 : P2 };
    assert.deepEqual(r.from, want);
    assert.deepEqual(r.info.responseOrigin, want);
  });
}

test('port pairs are independent servers: CHANGE-REQUEST stays within the pair', async () => {
  const r = await client.binding({ address: A1, port: P3 }, { changeIp: true, changePort: true });
  assert.deepEqual(r?.from, { address: A2, port: P4 });
  assert.deepEqual(r?.info.otherAddress, { address: A2, port: P4 });
});

test('RESPONSE-PORT: the response goes to that port of the source address, and the answering socket is reported', async () => {
  const r = await client.binding({ address: A1, port: P1 }, { responsePort: other.port });
  assert.ok(r?.ok);
  assert.equal(r.receivedOn, other.port, 'the response arrived at the other socket');
  assert.deepEqual(r.reflexive, { address: A1, port: client.port }, "XOR-MAPPED-ADDRESS is still the request's source");
  const both = await client.binding({ address: A1, port: P1 }, { responsePort: other.port, changePort: true });
  assert.equal(both?.receivedOn, other.port);
  assert.deepEqual(both?.from, { address: A1, port: P2 });
});

test('PADDING is understood (RFC 5780); an unknown comprehension-required attribute gets 420 with UNKNOWN-ATTRIBUTES', async () => {
  const padded = await client.binding({ address: A1, port: P1 }, { padding: 1500 });
  assert.ok(padded?.ok);
  const reply = await rawExchange(encodeMessage(bindingRequest(randomBytes(12), [{ type: 0x7ffe, value: Buffer.alloc(4) }]), { fingerprint: true }));
  const m = decodeMessage(reply);
  assert.equal(m.cls, 'error');
  const info = bindingInfo(m);
  assert.equal(info.error?.code, 420);
  assert.deepEqual(info.unknownAttributes, [0x7ffe]);
  assert.equal(checkFingerprint(reply), true);
});

test('unknown comprehension-optional attributes are ignored; an unknown method gets 400', async () => {
  const ok = decodeMessage(await rawExchange(encodeMessage(bindingRequest(randomBytes(12), [{ type: 0x8fff, value: Buffer.alloc(4) }]))));
  assert.equal(ok.cls, 'success');
  const bad = decodeMessage(
    await rawExchange(encodeMessage({ method: 0x00a, cls: 'request', cookie: MAGIC_COOKIE, transactionId: randomBytes(12), attributes: [] })),
  );
  assert.equal(bad.cls, 'error');
  assert.equal(bindingInfo(bad).error?.code, 400);
});

test('a request with a wrong FINGERPRINT is dropped', async () => {
  const wire = encodeMessage(bindingRequest(randomBytes(12)), { fingerprint: true });
  wire[wire.length - 1] = wire[wire.length - 1]! ^ 0xff;
  await assert.rejects(rawExchange(wire, 300), /no reply/);
});

test('RFC 3489 client (no magic cookie): MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS', async () => {
  const r = await client.binding({ address: A1, port: P1 }, { legacy: true });
  assert.ok(r?.ok);
  assert.notEqual(r.message.cookie, MAGIC_COOKIE);
  assert.deepEqual(r.info.mapped, { address: A1, port: client.port });
  assert.equal(r.info.xorMapped, undefined);
  assert.deepEqual(r.info.sourceAddress, { address: A1, port: P1 });
  assert.deepEqual(r.info.otherAddress, { address: A2, port: P2 }, 'from CHANGED-ADDRESS');
  const changed = await client.binding({ address: A1, port: P1 }, { legacy: true, changeIp: true });
  assert.deepEqual(changed?.from, { address: A2, port: P1 });
});

test('retransmission schedule: RFC 5389 defaults give up after 39.5 s; the lab one after 2.3 s', () => {
  assert.deepEqual(retransmitSchedule(RFC5389_RETRANSMIT), { sends: [0, 500, 1500, 3500, 7500, 15500, 31500], giveUp: 39500 });
  assert.deepEqual(retransmitSchedule(LAB_RETRANSMIT), { sends: [0, 100, 300, 700, 1500], giveUp: 2300 });
  assert.deepEqual(retransmitSchedule({ ...RFC5389_RETRANSMIT, timeoutMs: 2000 }), { sends: [0, 500, 1500], giveUp: 2000 });
});

test('the client retransmits until answered, and gives up on time when nobody answers', async () => {
  // A server that ignores the first two transmissions.
  const lossy = dgram.createSocket('udp4');
  await new Promise<void>((r) => lossy.bind(0, A1, () => r()));
  let seen = 0;
  lossy.on('message', (buf, rinfo) => {
    if (++seen < 3) return;
    const req = decodeMessage(buf);
    const res = encodeMessage(
      { method: METHOD_BINDING, cls: 'success', cookie: MAGIC_COOKIE, transactionId: req.transactionId, attributes: [] },
      { fingerprint: true },
    );
    lossy.send(res, rinfo.port, rinfo.address);
  });
  const t0 = Date.now();
  const r = await client.binding({ address: A1, port: lossy.address().port }, { retransmit: { rto: 50, maxTransmits: 4, finalWaitFactor: 2 } });
  assert.ok(r?.ok);
  assert.equal(r.transmissions, 3);
  assert.ok(Date.now() - t0 >= 140, 'answered after the third transmission (at 150 ms)');
  lossy.close();

  const silent = dgram.createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, A1, () => r()));
  let count = 0;
  silent.on('message', () => count++);
  const t1 = Date.now();
  const none = await client.binding({ address: A1, port: silent.address().port }, { retransmit: { rto: 40, maxTransmits: 3, finalWaitFactor: 2 } });
  const took = Date.now() - t1;
  assert.equal(none, undefined);
  assert.equal(count, 3, 'Rc transmissions');
  assert.ok(took >= 195 && took < 600, `gave up after 40+80+2x40 = 200 ms (took ${took})`);
  silent.close();
});

async function rawExchange(wire: Buffer, timeoutMs = 1000): Promise<Buffer> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, A1, () => r()));
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no reply')), timeoutMs);
      s.on('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
      s.send(wire, P1, A1);
    });
  } finally {
    s.close();
  }
}
