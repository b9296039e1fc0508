// What differs between distributions. Everything else in a build is shared.
import type { HostOs } from '../host-os.js';
import type { Recipe } from '../recipe.js';

export interface Distribution {
  id: 'debian' | 'ubuntu';
  label: string;
  /**
   * Suites labctl was written for. A recipe may name another (a release newer than labctl):
   * it is built like the newest of these, with debootstrapScript, and the build warns.
   */
  suites: readonly string[];
  defaultMirror: string;
  defaultComponents: readonly string[];
  defaultKeyring: string;
  /**
   * Human text naming the package or file that provides a keyring, for "keyring missing"
   * errors. True for the host it runs on: which packages exist depends on it.
   */
  keyringProvider(keyring: string, host: HostOs): string;
  /**
   * The debootstrap script, passed explicitly as debootstrap's 4th argument so that
   * a suite newer than the host's debootstrap still builds (e.g. noble on Debian 12).
   */
  debootstrapScript: string;
  /** Extra debootstrap options for this distribution and suite. */
  debootstrapArgs(recipe: Recipe): string[];
  /**
   * Content of /etc/apt/sources.list inside the image. signedBy: the keyring inside the
   * image that apt checks the archive with ([signed-by=...]); without it, whatever apt trusts.
   */
  sourcesList(recipe: Recipe, signedBy?: string): string;
}
