#!/usr/bin/env bash
# The whole test suite: type check, unit tests, then the root end-to-end tests against
# one shared bookworm test image, built once per run and shared by every test file. Run as root:
#   npm test
# Each run builds that image from the Debian mirror (a cold debootstrap, about 80 s) in a
# fresh data dir, /var/tmp/labctl-test.XXXXXX, and removes the dir at the end, also when
# the run fails or is interrupted. To keep the image and its caches between runs while
# developing, name the data dir yourself:
#   LABCTL_TEST_DATA_DIR=/var/tmp/labctl-test-data npm test
# That dir is reused (the image is rebuilt when its recipe or the build code changed) and
# kept; only its mounts and loop devices are taken away at the end.
set -uo pipefail
cd "$(dirname "$0")/.."

npm run build >/dev/null || exit 1
npx tsc --noEmit -p . || { echo "tsc --noEmit failed" >&2; exit 1; }
npm run lint --silent || { echo "npm run lint failed (npm run format fixes the formatting)" >&2; exit 1; }

files=(test/unit/*.test.ts)
if [ "$(id -u)" -eq 0 ]; then
  cleanup_args=(cleanup --force)
  if [ -z "${LABCTL_TEST_DATA_DIR:-}" ]; then
    # /var/tmp rather than /tmp: the image and the caches take about 1 GiB, /tmp is often a small tmpfs.
    LABCTL_TEST_DATA_DIR=$(mktemp -d /var/tmp/labctl-test.XXXXXX) || exit 1
    # The mode the fixed dir had (mkdir's 0755), not mktemp's 0700: the tests know no other.
    chmod 755 "$LABCTL_TEST_DATA_DIR"
    # Tells test/e2e/image.test.ts that the shared image must come from a cold build.
    export LABCTL_TEST_FRESH_DATA_DIR=1
    cleanup_args+=(--remove)
  fi
  # The prepare step and every test file (each in its own process) use this dir.
  export LABCTL_TEST_DATA_DIR
  cleaned=
  cleanup() {
    [ -n "$cleaned" ] && return 0
    cleaned=1
    # A second Ctrl-C must not stop the cleanup half-way (it leaves mounts and loop devices).
    trap '' INT TERM
    node --import tsx scripts/test-image.ts "${cleanup_args[@]}"
  }
  # Whatever ends the run (a failed step, Ctrl-C, a kill) cleans up; the normal end does it below.
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
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
  cleanup || status=1
fi
echo "${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
exit $status
