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
tap=$(mktemp)
node --import tsx --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" "${files[@]}"
status=$?
# The closing lines, in TAP's words and as one plain line.
grep -E '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$tap"
pass=$(awk '/^# pass /{print $3}' "$tap"); fail=$(awk '/^# fail /{print $3}' "$tap"); skip=$(awk '/^# skipped /{print $3}' "$tap")
rm -f "$tap"

if [ "$(id -u)" -eq 0 ]; then
  node --import tsx scripts/test-image.ts cleanup --force || status=1
fi
echo "${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
exit $status
