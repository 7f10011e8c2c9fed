# PASS/FAIL bookkeeping for the shell test suites (tests/package/run.sh,
# tests/azure-batch/run.sh). Sourced: sets passed and failed, and defines
#   pass TEXT, fail TEXT     print a PASS/FAIL line and count it
#   check TEXT COMMAND...    PASS if COMMAND succeeds (its output is dropped)
#   check_shown TEXT COMMAND...  the same, but COMMAND's output is shown on a FAIL
#   finish                   print "N passed, M failed"; exit 1 if any failed
# shellcheck shell=bash
passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}
check_shown() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$what"; else echo "$out"; fail "$what"; fi
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
