import { debian } from './debian.js';
import { ubuntu } from './ubuntu.js';
import type { Distribution } from './types.js';

export type { Distribution } from './types.js';
export { debian, ubuntu };

export const DISTRIBUTIONS: Readonly<Record<Distribution['id'], Distribution>> = { debian, ubuntu };

export function distributionOf(id: Distribution['id']): Distribution {
  return DISTRIBUTIONS[id];
}
