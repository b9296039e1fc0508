// Sizes as labctl prints them (binary units), whatever unit the tool that reported them used.

/** 1536 -> "1.5 KiB", 83886080 -> "80.0 MiB", 512 -> "512 B". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}
