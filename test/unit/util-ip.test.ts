// src/util/ipv4.ts and ipv6.ts: address and subnet text forms and the subnet arithmetic that
// lab files' checks and address planning rest on (the bad-labs corpus tests the messages
// built on them; this pins the helpers themselves, edges included).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Cidr, cidrContains, cidrsOverlap, formatCidr, formatIpv4, isHostOf, parseCidr, parseIpv4, subnetOfAddress } from '../../src/util/ipv4.js';
import { formatIpv6 } from '../../src/util/ipv6.js';

const ip = (s: string): number => parseIpv4(s) ?? assert.fail(`not an address: ${s}`);
const net = (s: string): Cidr => parseCidr(s) ?? assert.fail(`not a subnet: ${s}`);

describe('IPv4 addresses', () => {
  test('parse to their 32 bits as an unsigned number, and format back', () => {
    assert.equal(parseIpv4('0.0.0.0'), 0);
    assert.equal(parseIpv4('10.0.1.1'), 0x0a000101);
    assert.equal(parseIpv4('255.255.255.255'), 0xffffffff, 'unsigned: the top bit set is no negative number');
    assert.equal(parseIpv4('128.0.0.1'), 2 ** 31 + 1);
    for (const s of ['0.0.0.0', '10.0.1.1', '100.64.1.254', '128.0.0.1', '203.0.113.2', '255.255.255.255']) assert.equal(formatIpv4(ip(s)), s);
  });

  test('anything but four plain decimal octets 0-255 is refused', () => {
    for (const s of [
      '',
      '10.0.1',
      '10.0.1.1.1',
      '256.0.0.1',
      '10.0.1.300',
      '1.2.3.-4',
      '10.0.1.1/24',
      ' 10.0.1.1',
      '10.0.1.1 ',
      'a.b.c.d',
      '1..2.3',
      '1000.0.0.1',
      '::1',
    ]) {
      assert.equal(parseIpv4(s), undefined, JSON.stringify(s));
    }
    // A leading zero is octal to inet_aton (010 is 8): refused rather than read either way.
    for (const s of ['010.0.0.1', '10.00.1.1', '10.0.01.1', '10.0.1.01']) assert.equal(parseIpv4(s), undefined, s);
    assert.equal(parseIpv4('10.0.0.0'), 0x0a000000, 'a lone 0 is no leading zero');
  });
});

describe('IPv4 subnets', () => {
  test('a.b.c.d/len with len 8-30 and no host bits set', () => {
    assert.deepEqual(parseCidr('10.0.1.0/24'), { network: 0x0a000100, prefix: 24 });
    assert.deepEqual(parseCidr('10.0.0.0/8'), { network: 0x0a000000, prefix: 8 });
    assert.deepEqual(parseCidr('100.64.9.4/30'), { network: parseIpv4('100.64.9.4'), prefix: 30 });
    assert.deepEqual(parseCidr('240.0.0.0/8'), { network: 0xf0000000, prefix: 8 });
    for (const s of ['10.0.1.0/24', '10.0.2.0/23', '100.100.0.0/16', '10.9.0.0/29', '100.64.9.4/30', '240.0.0.0/8']) assert.equal(formatCidr(net(s)), s);
  });

  test('refused: host bits set, lengths outside 8-30, malformed', () => {
    for (const s of [
      '10.0.1.5/24',
      '10.0.1.0/23',
      '10.0.1.2/30',
      '10.0.0.0/7',
      '10.0.0.0/31',
      '10.0.0.0/32',
      '0.0.0.0/0',
      '10.0.1.0/33',
      '10.0.1.0',
      '10.0.1.0/',
      '10.0.1.0/024',
      '10.0.1/24',
      '10.0.1.0/24/1',
      '256.0.1.0/24',
    ]) {
      assert.equal(parseCidr(s), undefined, s);
    }
  });

  test('containment, host addresses (not the network or broadcast address) and overlap', () => {
    const c = net('10.0.1.0/24');
    assert.ok(cidrContains(c, ip('10.0.1.0')));
    assert.ok(cidrContains(c, ip('10.0.1.255')));
    assert.ok(!cidrContains(c, ip('10.0.2.0')));
    assert.ok(!cidrContains(c, ip('10.0.0.255')));
    assert.ok(isHostOf(c, ip('10.0.1.1')));
    assert.ok(isHostOf(c, ip('10.0.1.254')));
    assert.ok(!isHostOf(c, ip('10.0.1.0')), 'the network address');
    assert.ok(!isHostOf(c, ip('10.0.1.255')), 'the broadcast address');
    assert.ok(!isHostOf(c, ip('10.0.2.1')), 'outside');
    // A /30 has two hosts; high addresses (top bit set) work like any other.
    const small = net('203.0.113.4/30');
    assert.deepEqual(
      ['203.0.113.4', '203.0.113.5', '203.0.113.6', '203.0.113.7'].map((a) => isHostOf(small, ip(a))),
      [false, true, true, false],
    );
    assert.ok(isHostOf(net('240.0.0.0/8'), ip('240.255.255.254')));
    assert.ok(!isHostOf(net('240.0.0.0/8'), ip('240.255.255.255')), 'its broadcast address');
    assert.ok(isHostOf(net('255.255.255.0/24'), ip('255.255.255.254')), 'the very top of the address space');
    // Overlap is symmetric; a /16 overlaps every /24 inside it; neighbours do not overlap.
    const pairs: [string, string, boolean][] = [
      ['10.0.1.0/24', '10.0.1.0/24', true],
      ['100.100.0.0/16', '100.100.7.0/24', true],
      ['10.0.2.0/23', '10.0.3.0/24', true],
      ['10.0.2.0/23', '10.0.4.0/24', false],
      ['10.0.1.0/24', '10.0.2.0/24', false],
      ['10.0.0.0/8', '11.0.0.0/8', false],
      ['10.0.0.0/8', '10.255.255.252/30', true],
    ];
    for (const [a, b, overlap] of pairs) {
      assert.equal(cidrsOverlap(net(a), net(b)), overlap, `${a} ${b}`);
      assert.equal(cidrsOverlap(net(b), net(a)), overlap, `${b} ${a}`);
    }
  });

  test("cidrContains takes any prefix 0-32 (check reads a namespace's own subnets, host bits cleared)", () => {
    assert.ok(cidrContains({ network: 0, prefix: 0 }, ip('203.0.113.1')), '/0 holds everything');
    assert.ok(cidrContains({ network: ip('192.0.2.1'), prefix: 32 }, ip('192.0.2.1')));
    assert.ok(!cidrContains({ network: ip('192.0.2.1'), prefix: 32 }, ip('192.0.2.2')));
    assert.ok(cidrContains({ network: ip('192.0.0.0'), prefix: 4 }, ip('198.51.100.1')));
  });

  test('subnetOfAddress: the subnet an interface address (host bits set, prefix 0-32) lies in', () => {
    assert.deepEqual(subnetOfAddress('10.0.1.5/24'), net('10.0.1.0/24'));
    assert.deepEqual(subnetOfAddress('203.0.113.200/25'), { network: ip('203.0.113.128'), prefix: 25 });
    assert.deepEqual(subnetOfAddress('192.0.2.1/32'), { network: ip('192.0.2.1'), prefix: 32 });
    assert.deepEqual(subnetOfAddress('10.0.0.1/0'), { network: 0, prefix: 0 });
    for (const bad of ['10.0.0.1', '10.0.0.1/33', '10.0.0.256/8', '10.0.0.1/', '/24', '10.0.0.1/024']) assert.equal(subnetOfAddress(bad), undefined, bad);
  });
});

describe('IPv6 text form (RFC 5952)', () => {
  const v6 = (hex: string) => formatIpv6(Buffer.from(hex.replace(/ /g, ''), 'hex'));
  test('lower-case hex without leading zeros, the longest run of zero groups as "::"', () => {
    assert.equal(v6('2001 0db8 0000 0000 0000 0000 0000 0001'), '2001:db8::1');
    assert.equal(v6('0000 0000 0000 0000 0000 0000 0000 0001'), '::1');
    assert.equal(v6('0000 0000 0000 0000 0000 0000 0000 0000'), '::');
    assert.equal(v6('fe80 0000 0000 0000 0000 0000 0000 0000'), 'fe80::');
    assert.equal(v6('2001 0DB8 00AB 0000 0000 0000 0000 00CD'), '2001:db8:ab::cd');
  });

  test('a single zero group stays "0"; of two equal runs the first becomes "::"', () => {
    assert.equal(v6('2001 0db8 0000 0001 0001 0001 0001 0001'), '2001:db8:0:1:1:1:1:1');
    assert.equal(v6('2001 0000 0000 0001 0000 0000 0001 0001'), '2001::1:0:0:1:1');
    assert.equal(v6('2001 0db8 0000 0000 0001 0000 0000 0000'), '2001:db8:0:0:1::', 'the longer run wins');
  });
});
