// STUN wire format against RFC 5769's test vectors (byte for byte), and the RFC 5780
// attributes labctl's server and client use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  ATTR,
  bindingInfo,
  checkFingerprint,
  checkIntegrity,
  crc32,
  decodeAddress,
  decodeChangeRequest,
  decodeErrorCode,
  decodeMessage,
  decodeResponsePort,
  decodeUnknownAttributes,
  decodeXorAddress,
  encodeAddress,
  encodeChangeRequest,
  encodeErrorCode,
  encodeMessage,
  encodeResponsePort,
  encodeUnknownAttributes,
  encodeXorAddress,
  getAttribute,
  looksLikeStun,
  MAGIC_COOKIE,
  messageType,
  METHOD_BINDING,
  parseMessageType,
  StunDecodeError,
  type StunMessage,
} from '../../src/stun/message.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 5769 section 2.1: Sample Request (username "evtj:h6vY", password "VOkJxbRl1RmTxUk/WvJxBt").
const SAMPLE_REQUEST = hex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`);
// 2.2: Sample IPv4 Response (software "test vector", mapped 192.0.2.1:32853).
const SAMPLE_IPV4_RESPONSE = hex(`
  01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 08 00 01 a1 47 e1 12 a6 43
  00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
  80 28 00 04 c0 7d 4c 96`);
// 2.3: Sample IPv6 Response (mapped [2001:db8:1234:5678:11:2233:4455:6677]:32853).
const SAMPLE_IPV6_RESPONSE = hex(`
  01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
  00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
  80 28 00 04 c8 fb 0b 4c`);
// 2.4: Sample Request with Long-Term Authentication (no FINGERPRINT).
const SAMPLE_LONG_TERM = hex(`
  00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
  00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
  00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
  00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
  00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66`);
const PASSWORD = Buffer.from('VOkJxbRl1RmTxUk/WvJxBt');
const TID = hex('b7 e7 a7 01 bc 34 d6 86 fa 87 df ae');

test('RFC 5769 2.1 sample request: decodes, FINGERPRINT and MESSAGE-INTEGRITY verify', () => {
  const m = decodeMessage(SAMPLE_REQUEST);
  assert.equal(m.method, METHOD_BINDING);
  assert.equal(m.cls, 'request');
  assert.equal(m.cookie, MAGIC_COOKIE);
  assert.deepEqual(m.transactionId, TID);
  assert.deepEqual(
    m.attributes.map((a) => a.type),
    [ATTR.SOFTWARE, ATTR.PRIORITY, ATTR.ICE_CONTROLLED, ATTR.USERNAME, ATTR.MESSAGE_INTEGRITY, ATTR.FINGERPRINT],
  );
  assert.equal(getAttribute(m, ATTR.SOFTWARE)!.toString(), 'STUN test client');
  assert.equal(getAttribute(m, ATTR.USERNAME)!.toString(), 'evtj:h6vY');
  assert.equal(checkFingerprint(SAMPLE_REQUEST), true);
  assert.equal(checkIntegrity(SAMPLE_REQUEST, PASSWORD), true);
  assert.equal(checkIntegrity(SAMPLE_REQUEST, Buffer.from('wrong')), false);
});

test('RFC 5769 2.1 sample request: encoding the same attributes gives the same bytes', () => {
  const m = decodeMessage(SAMPLE_REQUEST);
  const body: StunMessage = { ...m, attributes: m.attributes.filter((a) => a.type !== ATTR.MESSAGE_INTEGRITY && a.type !== ATTR.FINGERPRINT) };
  const wire = encodeMessage(body, { integrityKey: PASSWORD, fingerprint: true, padding: 0x20 });
  assert.equal(wire.toString('hex'), SAMPLE_REQUEST.toString('hex'));
});

test('RFC 5769 2.2 sample IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853, bytes reproduced', () => {
  const m = decodeMessage(SAMPLE_IPV4_RESPONSE);
  assert.equal(m.cls, 'success');
  const info = bindingInfo(m);
  assert.deepEqual(info.xorMapped, { address: '192.0.2.1', port: 32853 });
  assert.equal(info.software, 'test vector');
  assert.equal(checkFingerprint(SAMPLE_IPV4_RESPONSE), true);
  assert.equal(checkIntegrity(SAMPLE_IPV4_RESPONSE, PASSWORD), true);
  const wire = encodeMessage(
    {
      method: METHOD_BINDING,
      cls: 'success',
      cookie: MAGIC_COOKIE,
      transactionId: TID,
      attributes: [
        { type: ATTR.SOFTWARE, value: Buffer.from('test vector') },
        { type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress({ address: '192.0.2.1', port: 32853 }, TID) },
      ],
    },
    { integrityKey: PASSWORD, fingerprint: true, padding: 0x20 },
  );
  assert.equal(wire.toString('hex'), SAMPLE_IPV4_RESPONSE.toString('hex'));
});

test('RFC 5769 2.3 sample IPv6 response: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853, bytes reproduced', () => {
  const m = decodeMessage(SAMPLE_IPV6_RESPONSE);
  const info = bindingInfo(m);
  assert.deepEqual(info.xorMapped, { address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 });
  assert.equal(checkFingerprint(SAMPLE_IPV6_RESPONSE), true);
  assert.equal(checkIntegrity(SAMPLE_IPV6_RESPONSE, PASSWORD), true);
  const wire = encodeMessage(
    {
      method: METHOD_BINDING,
      cls: 'success',
      cookie: MAGIC_COOKIE,
      transactionId: TID,
      attributes: [
        { type: ATTR.SOFTWARE, value: Buffer.from('test vector') },
        { type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress({ address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 }, TID) },
      ],
    },
    { integrityKey: PASSWORD, fingerprint: true, padding: 0x20 },
  );
  assert.equal(wire.toString('hex'), SAMPLE_IPV6_RESPONSE.toString('hex'));
});

test('RFC 5769 2.4 long-term credentials: key MD5(user:realm:SASLprep(password)) verifies', () => {
  const m = decodeMessage(SAMPLE_LONG_TERM);
  const user = getAttribute(m, ATTR.USERNAME)!.toString('utf8');
  assert.equal(user, '\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9');
  assert.equal(getAttribute(m, ATTR.REALM)!.toString(), 'example.org');
  assert.equal(getAttribute(m, ATTR.NONCE)!.toString(), 'f//499k954d6OL34oL9FSTvy64sA');
  const key = createHash('md5').update(`${user}:example.org:TheMatrIX`, 'utf8').digest();
  assert.equal(checkIntegrity(SAMPLE_LONG_TERM, key), true);
  assert.equal(checkFingerprint(SAMPLE_LONG_TERM), undefined, 'no FINGERPRINT in this vector');
  const body = { ...m, attributes: m.attributes.filter((a) => a.type !== ATTR.MESSAGE_INTEGRITY) };
  assert.equal(encodeMessage(body, { integrityKey: key }).toString('hex'), SAMPLE_LONG_TERM.toString('hex'));
});

test('a flipped bit fails FINGERPRINT', () => {
  const bad = Buffer.from(SAMPLE_IPV4_RESPONSE);
  bad[30] = bad[30]! ^ 1;
  assert.equal(checkFingerprint(bad), false);
});

test('CRC-32 is the ISO 3309 one ("123456789" -> cbf43926)', () => {
  assert.equal(crc32(Buffer.from('123456789')).toString(16), 'cbf43926');
});

test('message types: Binding request 0x0001, success 0x0101, error 0x0111, indication 0x0011', () => {
  assert.equal(messageType(METHOD_BINDING, 'request'), 0x0001);
  assert.equal(messageType(METHOD_BINDING, 'success'), 0x0101);
  assert.equal(messageType(METHOD_BINDING, 'error'), 0x0111);
  assert.equal(messageType(METHOD_BINDING, 'indication'), 0x0011);
  assert.deepEqual(parseMessageType(0x0111), { method: 1, cls: 'error' });
  // Allocate (0x003) success response is 0x0103 (RFC 5766).
  assert.equal(messageType(0x003, 'success'), 0x0103);
  assert.deepEqual(parseMessageType(0x0103), { method: 3, cls: 'success' });
});

test('RFC 5780 attributes: CHANGE-REQUEST flags, RESPONSE-PORT with padding, addresses', () => {
  assert.equal(encodeChangeRequest({ changeIp: true, changePort: true }).toString('hex'), '00000006');
  assert.equal(encodeChangeRequest({ changeIp: true, changePort: false }).toString('hex'), '00000004');
  assert.equal(encodeChangeRequest({ changeIp: false, changePort: true }).toString('hex'), '00000002');
  assert.deepEqual(decodeChangeRequest(hex('00000004')), { changeIp: true, changePort: false });
  assert.equal(encodeResponsePort(54321).toString('hex'), 'd4310000');
  assert.equal(decodeResponsePort(hex('d431')), 54321, 'a 2-byte RESPONSE-PORT is accepted too');
  assert.equal(encodeAddress({ address: '100.64.1.100', port: 3478 }).toString('hex'), '00010d96644001' + '64');
  assert.deepEqual(decodeAddress(hex('00010d9664400164')), { address: '100.64.1.100', port: 3478 });
  const x = encodeXorAddress({ address: '10.0.1.1', port: 12345 }, TID);
  assert.deepEqual(decodeXorAddress(x, TID), { address: '10.0.1.1', port: 12345 });
});

test('OTHER-ADDRESS wins over the old CHANGED-ADDRESS; CHANGED-ADDRESS alone is accepted', () => {
  const base = { method: METHOD_BINDING, cls: 'success' as const, cookie: MAGIC_COOKIE, transactionId: TID };
  const both = bindingInfo({
    ...base,
    attributes: [
      { type: ATTR.CHANGED_ADDRESS, value: encodeAddress({ address: '192.0.2.9', port: 9 }) },
      { type: ATTR.OTHER_ADDRESS, value: encodeAddress({ address: '192.0.2.2', port: 3479 }) },
    ],
  });
  assert.deepEqual(both.otherAddress, { address: '192.0.2.2', port: 3479 });
  const old = bindingInfo({ ...base, attributes: [{ type: ATTR.CHANGED_ADDRESS, value: encodeAddress({ address: '192.0.2.2', port: 3479 }) }] });
  assert.deepEqual(old.otherAddress, { address: '192.0.2.2', port: 3479 });
});

test('ERROR-CODE and UNKNOWN-ATTRIBUTES', () => {
  const e = encodeErrorCode({ code: 420, reason: 'Unknown Attribute' });
  assert.equal(e.subarray(0, 4).toString('hex'), '00000414');
  assert.deepEqual(decodeErrorCode(e), { code: 420, reason: 'Unknown Attribute' });
  assert.deepEqual(decodeUnknownAttributes(encodeUnknownAttributes([0x0003, 0x7fff])), [0x0003, 0x7fff]);
  assert.throws(() => encodeErrorCode({ code: 200, reason: 'x' }));
});

test('malformed messages are refused with a reason', () => {
  assert.throws(() => decodeMessage(Buffer.alloc(10)), StunDecodeError);
  const notStun = Buffer.from(SAMPLE_IPV4_RESPONSE);
  notStun[0] = 0xc1;
  assert.throws(() => decodeMessage(notStun), /two most significant bits/);
  const badLen = Buffer.from(SAMPLE_IPV4_RESPONSE);
  badLen.writeUInt16BE(0x40, 2);
  assert.throws(() => decodeMessage(badLen), /does not match/);
  const overrun = Buffer.from(SAMPLE_IPV4_RESPONSE);
  overrun.writeUInt16BE(0x00ff, 22);
  assert.throws(() => decodeMessage(overrun), /runs past the end/);
  assert.equal(looksLikeStun(Buffer.from('hello world, not stun')), false);
  assert.equal(looksLikeStun(SAMPLE_REQUEST), true);
});
