// Sysctl keys as /proc/sys paths. A process reads and writes the values of its own network
// namespace there (/proc/sys/net follows the opener's namespace).

/** net.ipv4.ip_forward -> /proc/sys/net/ipv4/ip_forward */
export function sysctlPath(key: string): string {
  return `/proc/sys/${key.replaceAll('.', '/')}`;
}
