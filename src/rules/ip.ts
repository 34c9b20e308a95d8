import { isIPv4, isIPv6 } from 'node:net';

/** An IP address as bytes: 4 for IPv4, 16 for IPv6. */
export type IpBytes = Uint8Array;

/**
 * Parses an IPv4 or IPv6 address (no zone id, no prefix) into bytes, or null. Node's `isIP`
 * validates; the parse below only has to handle valid text.
 */
export function parseIp(text: string): IpBytes | null {
  if (isIPv4(text)) return parseV4(text);
  if (isIPv6(text) && !text.includes('%')) return parseV6(text);
  return null;
}

function parseV4(text: string): IpBytes {
  const out = new Uint8Array(4);
  const parts = text.split('.');
  for (let i = 0; i < 4; i++) out[i] = Number(parts[i]);
  return out;
}

function parseV6(text: string): IpBytes {
  const out = new Uint8Array(16);
  let s = text;
  // An embedded IPv4 tail (`::ffff:10.0.0.1`) is two 16-bit groups.
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = parseV4(tail) as unknown as [number, number, number, number];
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = s.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = rest ? rest.split(':') : [];
  const groups =
    rest === undefined
      ? headGroups
      : [
          ...headGroups,
          ...new Array<string>(8 - headGroups.length - tailGroups.length).fill('0'),
          ...tailGroups,
        ];
  for (let i = 0; i < 8; i++) {
    const g = Number.parseInt(groups[i] ?? '0', 16);
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  }
  return out;
}

/** A CIDR block: the network bytes and prefix length. */
export interface Cidr {
  network: IpBytes;
  bits: number;
}

/** Parses `10.0.0.0/24` or `2001:db8::/32`; null when invalid. Host bits are masked off. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  if (slash === -1) return null;
  const addr = parseIp(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (!addr || !/^\d{1,3}$/.test(bitsText)) return null;
  const bits = Number(bitsText);
  if (bits > addr.length * 8) return null;
  const network = mask(addr, bits);
  return { network, bits };
}

function mask(addr: IpBytes, bits: number): IpBytes {
  const out = new Uint8Array(addr.length);
  for (let i = 0; i < addr.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i] = (addr[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** Whether `addr` lies inside `cidr` (an IPv4 address never lies in an IPv6 block, and vice versa). */
export function cidrContains(cidr: Cidr, addr: IpBytes): boolean {
  if (addr.length !== cidr.network.length) return false;
  const full = cidr.bits >> 3;
  for (let i = 0; i < full; i++) if (addr[i] !== cidr.network[i]) return false;
  const rem = cidr.bits & 7;
  if (rem === 0) return true;
  const m = (0xff << (8 - rem)) & 0xff;
  return ((addr[full] as number) & m) === cidr.network[full];
}

/** Whether two addresses are the same (so `2001:db8::1` equals `2001:0db8:0:0:0:0:0:1`). */
export function sameIp(a: IpBytes, b: IpBytes): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
