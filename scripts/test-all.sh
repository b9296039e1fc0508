#!/usr/bin/env bash
# The whole test suite: type check, unit tests, then the root end-to-end tests against
# one shared bookworm test image built (or reused) once per run. Run as root:
#   npm test
set -uo pipefail
cd "$(dirname "$0")/.."

npm run build >/dev/null || exit 1
npx tsc --noEmit -p . || { echo "tsc --noEmit failed" >&2; exit 1; }

files=(test/unit/*.test.ts)
if [ "$(id -u)" -eq 0 ]; then
  # Build the shared image once; every test file that boots machines reuses it.
  node --import tsx scripts/test-image.ts prepare || { echo "could not build the shared test image" >&2; exit 1; }
  files+=(test/e2e/*.test.ts)
else
  echo "not root: running the unit tests only (the end-to-end tests create namespaces and images)" >&2
fi

# One file at a time: the end-to-end files share the default lab's namespace names.
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
status=$?

if [ "$(id -u)" -eq 0 ]; then
  node --import tsx scripts/test-image.ts cleanup --force || status=1
fi
exit $status
