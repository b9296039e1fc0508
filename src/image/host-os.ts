// The host's distribution and release, from os-release(5). Which packages exist depends on
// it (Debian 13 packages the Ubuntu archive keyring, Debian 12 only in its backports), so a
// message that tells users what to install must know where it runs.
import { readFileSync } from 'node:fs';

export interface HostOs {
  /** ID=, e.g. "debian", "ubuntu" ("" when unknown) */
  id: string;
  /** ID_LIKE=, e.g. ["debian"] on Ubuntu, ["ubuntu", "debian"] on Linux Mint */
  idLike: string[];
  /** VERSION_ID=, e.g. "12", "24.04"; Debian testing and unstable have none */
  versionId?: string;
  /** VERSION_CODENAME=, e.g. "bookworm", "noble" */
  codename?: string;
  /** PRETTY_NAME=, e.g. "Debian GNU/Linux 12 (bookworm)" */
  prettyName?: string;
}

/** One os-release value: quotes removed, shell-style backslash escapes undone. */
function unquote(raw: string): string {
  const value = raw.trim();
  const quote = value[0];
  if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
    const inner = value.slice(1, -1);
    return quote === '"' ? inner.replace(/\\([$"`\\])/g, '$1') : inner;
  }
  return value;
}

/** Parses the text of /etc/os-release. Pure. */
export function parseOsRelease(text: string): HostOs {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) fields.set(m[1]!, unquote(m[2]!));
  }
  const get = (key: string) => fields.get(key) || undefined;
  return {
    id: (get('ID') ?? '').toLowerCase(),
    idLike: (get('ID_LIKE') ?? '').toLowerCase().split(/\s+/).filter(Boolean),
    ...(get('VERSION_ID') ? { versionId: get('VERSION_ID') } : {}),
    ...(get('VERSION_CODENAME') ? { codename: get('VERSION_CODENAME') } : {}),
    ...(get('PRETTY_NAME') ? { prettyName: get('PRETTY_NAME') } : {}),
  };
}

/** The host's os-release (/etc/os-release, else /usr/lib/os-release); an unknown host when neither is readable. */
export function readHostOs(): HostOs {
  for (const file of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      return parseOsRelease(readFileSync(file, 'utf8'));
    } catch {
      // next
    }
  }
  return { id: '', idLike: [] };
}

/** "Debian GNU/Linux 12 (bookworm)", or what is known of it. */
export function hostLabel(host: HostOs): string {
  return host.prettyName ?? ([host.id, host.versionId].filter(Boolean).join(' ') || 'an unknown distribution');
}

export function isUbuntuLike(host: HostOs): boolean {
  return host.id === 'ubuntu' || host.idLike.includes('ubuntu');
}

/** Debian itself (not a derivative: their archives differ). */
export function isDebian(host: HostOs): boolean {
  return host.id === 'debian';
}

/** Debian's major release number; undefined for testing and unstable (no VERSION_ID) and for other hosts. */
export function debianRelease(host: HostOs): number | undefined {
  if (!isDebian(host) || host.versionId === undefined) return undefined;
  const major = Number.parseInt(host.versionId, 10);
  return Number.isFinite(major) ? major : undefined;
}
