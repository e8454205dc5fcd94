#!/usr/bin/env bash
# The socketbox binary's route tester: --check-config and --test-route on a
# corpus of configurations, tuples and expected decisions, plus exit codes
# and error output for bad files.
set -uo pipefail
SOCKETBOX="$1"
CORPUS="$(dirname "$0")/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# --check-config checks the fds a file names (jump-fd:N) in its own fd
# environment: this runs it with a connected Unix datagram socket at each.
check_config_with_fds() {
  python3 - "$SOCKETBOX" "$1" <<'PY'
import fcntl, os, re, socket, subprocess, sys
numbers = sorted({int(n) for n in re.findall(r"jump-fd:(\d+)", open(sys.argv[2]).read())})
keep = []
for n in numbers:
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    keep += [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 500) for s in pair]  # out of the way
    for s in pair:
        s.close()
for n, theirs in zip(numbers, keep[1::2]):
    os.dup2(theirs, n)
r = subprocess.run([sys.argv[1], "-f", sys.argv[2], "--check-config"], pass_fds=numbers,
                   capture_output=True, text=True)
sys.stdout.write(r.stdout)
sys.stderr.write(r.stderr)
sys.exit(r.returncode)
PY
}

for conf in "$CORPUS"/*.conf; do
  name="${conf%.conf}"
  out="$(check_config_with_fds "$conf" 2>"$tmp/warn")" || fail "$conf: --check-config exit $?"
  [ "$out" = "OK" ] || fail "$conf: --check-config printed '$out'"
  flags=()
  case "$name" in *substitute*) flags=(-U) ;; esac
  "$SOCKETBOX" -f "$conf" "${flags[@]}" --test-route <"$name.tuples" >"$tmp/out" 2>/dev/null
  diff -u "$name.expected" "$tmp/out" || fail "$conf: decisions differ"
done

grep -q "jump cycle among rule-set 0, rule-set 1" < <("$SOCKETBOX" -f "$CORPUS/cycle.conf" --check-config 2>&1) ||
  fail "cycle warning missing"
grep -q "jump-rule:7 names a rule-set that does not exist" < <("$SOCKETBOX" -f "$CORPUS/cycle.conf" --check-config 2>&1) ||
  fail "missing-set warning missing"

# Without the fd it names: refused, naming the file, line and fd.
out="$("$SOCKETBOX" -f "$CORPUS/substitute.conf" --check-config 2>&1 3>&-)"
code=$?
[ "$code" -eq 1 ] || fail "jump-fd:3 not open: exit $code, want 1"
grep -q "substitute.conf:4: error: near 'jump-fd:3': fd 3 is not open" <<<"$out" ||
  fail "jump-fd:3 not open: message: $out"

printf 'max-rules:1\nrule-set:0 size:1\nr:1\nport:99999 fail\n' >"$tmp/bad.conf"
out="$("$SOCKETBOX" -f "$tmp/bad.conf" --check-config 2>&1)"
code=$?
[ "$code" -eq 1 ] || fail "bad config: exit $code, want 1"
grep -q "bad.conf:3: error: near 'r:1': unknown token 'r'" <<<"$out" || fail "bad config: message: $out"
grep -q "bad.conf:4: error: near 'port:99999'" <<<"$out" || fail "bad config: second error: $out"
grep -q "^OK" <<<"$out" && fail "bad config printed OK"

out="$("$SOCKETBOX" -f "$tmp/absent.conf" --check-config 2>&1)"
[ $? -eq 1 ] || fail "missing file: exit code"
grep -q "absent.conf: No such file or directory" <<<"$out" || fail "missing file: message: $out"

echo "x y" | "$SOCKETBOX" -f "$CORPUS/example.conf" --test-route >/dev/null 2>&1
[ $? -eq 1 ] || fail "malformed tuple line: want exit 1"

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "route tester CLI: all checks passed"
