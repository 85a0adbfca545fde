#!/usr/bin/env bash
# SIP benchmarks of tapir on loopback (docs/benchmarks.md, "SIP"). Needs sipp (Debian: sip-tester)
# and, for the yardstick, kamailio. Every address is 127.0.0.1.
#
#   bench.sh rate     sipp caller (as the trunk, :5080) → tapird (:5060) → line 2009, a fixed contact
#                     answered by sipp (:5099), with one application monitoring every line
#                     (tapir-load --watch); then the same caller → kamailio (:5070, stateful proxy,
#                     4 workers) → the same answering sipp. ROUNDS rounds of each, alternately, at
#                     RATE calls/s for DURATION s. Prints success, the rate sipp achieved and the
#                     server's CPU per call.
#   bench.sh hold     HOLD calls established at once (sipp -d), monitored; tapird's RSS per call.
#   bench.sh latency  tapir-load over the API: make call → connected event and drop → idle, for
#                     lines whose phone is a sipp that answers at once (and takes re-INVITEs), calls
#                     to the trunk (the same sipp).
#
# Environment: RATE (3000), DURATION (30), ROUNDS (3), HOLD (10000), CALLS (20000, latency),
# CONCURRENCY (100, latency), KEEP=1 keeps the scratch directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
# The sipp scenarios are the SIP provider's test scenarios.
scenarios="$root/providers/sip/tests/scenarios"
mode="${1:-rate}"
RATE="${RATE:-3000}"
DURATION="${DURATION:-30}"
ROUNDS="${ROUNDS:-3}"
HOLD="${HOLD:-10000}"
CALLS="${CALLS:-20000}"
CONCURRENCY="${CONCURRENCY:-100}"
# sipp's socket buffers (its default, 64 KiB, overflows in bursts and turns into 500 ms
# retransmissions that measure sipp, not the server; the kernel caps it at net.core.rmem_max).
SIPP_BUFFER=4194304

for tool in sipp kamailio; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench.sh: $tool is not installed (apt-get install sip-tester kamailio)" >&2
    exit 2
  fi
done

cargo build --release --locked -q --manifest-path "$root/Cargo.toml" -p tapir-server -p tapir-bench
bin="$root/target/release"
scratch="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "scratch kept: $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
cd "$scratch"

api=127.0.0.1:7990
# tapird with `lines` and `trunk`; the application `load` may use every line.
start_tapird() {
  cat > tapir.toml <<EOF
[services.office]
kind = "sip"
listen = "127.0.0.1:5060"
lines = [$1]
trunk = "$2"

[profiles.default]
services = ["office"]

[applications.load]
secret = "load-secret"
EOF
  rm -rf data
  "$bin/tapird" --config tapir.toml --listen "$api" --data-dir data > tapird.log 2>&1 &
  tapird=$!
  pids+=("$tapird")
  for _ in $(seq 100); do
    curl -sf "http://$api/metrics" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench.sh: tapird did not start (tapird.log):" >&2
  cat tapird.log >&2
  exit 1
}

# CPU seconds (user + system) used so far by the processes given.
cpu() {
  local ticks=0 p
  for p in "$@"; do
    if [ -r "/proc/$p/stat" ]; then
      ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "scale=3; $ticks / $(getconf CLK_TCK)" | bc
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# The answering sipp: `-sn uas` (the built-in callee) or `-sf SCENARIO`.
start_callee() {
  sipp "$@" -i 127.0.0.1 -p 5099 -bind_local -buff_size "$SIPP_BUFFER" -nostdin -trace_err > callee.out 2>&1 &
  pids+=("$!")
  sleep 0.5
}

# One sipp caller run against $1: prints "successful failed rate".
caller() {
  local target="$1" total="$2"
  shift 2
  rm -f caller_follows_routes_*_screen.log caller_follows_routes_*_errors.log
  sipp -sf "$scenarios/caller_follows_routes.xml" "$target" -s 2009 -i 127.0.0.1 -p 5080 -bind_local \
    -buff_size "$SIPP_BUFFER" -r "$RATE" -m "$total" -nostdin -trace_screen -trace_err "$@" > caller.out 2>&1 || true
  local screen
  screen="$(ls caller_follows_routes_*_screen.log)"
  local ok failed rate
  ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $3); v = $3} END {print v + 0}' "$screen")
  failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $3); v = $3} END {print v + 0}' "$screen")
  rate=$(awk -F'|' '/Call Rate/ {gsub(/[ a-z]/, "", $3); v = $3} END {print v + 0}' "$screen")
  # Calls that failed because a provisional response came after the 200.
  local late=0
  if ls caller_follows_routes_*_errors.log >/dev/null 2>&1; then
    late=$(grep -c "while pausing (index 6), received 'SIP/2.0 1" caller_follows_routes_*_errors.log || true)
  fi
  echo "$ok $failed $rate $late"
}

# Keeps the caller's error log of a run (for KEEP=1) as errors-LABEL.log.
keep_errors() {
  if ls caller_follows_routes_*_errors.log >/dev/null 2>&1; then
    cat caller_follows_routes_*_errors.log > "errors-$1.log"
  fi
}

case "$mode" in
rate)
  total=$((RATE * DURATION))
  start_tapird '{ number = "2009", name = "Lobby", contact = "sip:127.0.0.1:5099" }' \
    "sip:127.0.0.1:5080"
  start_callee -sf "$scenarios/callee_copies_routes.xml"
  kamailio -m 1024 -M 16 -f "$here/kamailio.cfg" -P "$scratch/kamailio.pid" -w "$scratch" -E -DD > kamailio.log 2>&1 &
  kamailio_main=$!
  pids+=("$kamailio_main")
  sleep 1
  printf '%-9s %5s %9s %7s %9s %9s %12s %s\n' server round calls failed success rate "CPU-µs/call" \
    "(failed: 1xx after the 200)"
  for round in $(seq "$ROUNDS"); do
    # tapir, watched by one application.
    "$bin/tapir-load" --net --url "http://$api" --application load --secret load-secret \
      --watch --calls "$total" --quiet > watch.out 2>&1 &
    watcher=$!
    sleep 1
    before=$(cpu "$tapird")
    read -r ok failed rate late < <(caller 127.0.0.1:5060 "$total")
    after=$(cpu "$tapird")
    keep_errors "tapir-$round"
    watched="watcher failed"
    if wait "$watcher"; then watched="watched"; fi
    printf '%-9s %5s %9s %7s %8.3f%% %9s %12.0f %s\n  %s\n' tapir "$round" "$ok" "$failed" \
      "$(echo "scale=5; 100 * $ok / $total" | bc)" "$rate" \
      "$(echo "scale=3; ($after - $before) * 1000000 / $total" | bc)" "($late)" \
      "$watched: $(head -1 watch.out); tapird's peak RSS so far $(peak_kib "$tapird") KiB"
    # kamailio, the same caller and callee.
    kids=$(pgrep -d ' ' -f "kamailio.cfg" || true)
    # shellcheck disable=SC2086
    before=$(cpu $kids)
    read -r ok failed rate late < <(caller 127.0.0.1:5070 "$total")
    # shellcheck disable=SC2086
    after=$(cpu $kids)
    keep_errors "kamailio-$round"
    printf '%-9s %5s %9s %7s %8.3f%% %9s %12.0f %s\n' kamailio "$round" "$ok" "$failed" \
      "$(echo "scale=5; 100 * $ok / $total" | bc)" "$rate" \
      "$(echo "scale=3; ($after - $before) * 1000000 / $total" | bc)" "($late)"
  done
  ;;
hold)
  start_tapird '{ number = "2009", name = "Lobby", contact = "sip:127.0.0.1:5099" }' \
    "sip:127.0.0.1:5080"
  start_callee -sf "$scenarios/callee_copies_routes.xml"
  "$bin/tapir-load" --net --url "http://$api" --application load --secret load-secret \
    --watch --calls "$HOLD" --watch-quiet-secs 120 --quiet > watch.out 2>&1 &
  watcher=$!
  sleep 1
  base=$(rss_kib "$tapird")
  # HOLD calls at 1,000/s, each held 75 s: all are up after HOLD/1000 s; the completed
  # transactions of their setup have expired 32 s later (RFC 3261's timers), so what is left at
  # the measurement is the established calls.
  hold_ms=75000
  RATE=1000 caller 127.0.0.1:5060 "$HOLD" -d "$hold_ms" -l "$HOLD" > hold.out &
  sleep $((HOLD / 1000 + 40))
  held=$(curl -s "http://$api/metrics" | awk '/^tapir_calls_by_state\{state="connected"\}/ {print $2}')
  now=$(rss_kib "$tapird")
  echo "tapird RSS: $base KiB before, $now KiB with $held calls connected (a monitor holds a handle on each)"
  echo "per call: $(echo "($now - $base) * 1024 / $held" | bc) bytes"
  wait "$!" 2>/dev/null || true
  wait "$watcher" && echo "watcher: $(head -1 watch.out)" || echo "watcher failed: $(cat watch.out)"
  ;;
latency)
  lines=""
  for n in $(seq 2001 2100); do
    lines+="{ number = \"$n\", contact = \"sip:127.0.0.1:5099\" }, "
  done
  start_tapird "$lines" "sip:127.0.0.1:5099"
  start_callee -sf "$scenarios/phone_answers_everything.xml"
  "$bin/tapir-load" --net --url "http://$api" --application load --secret load-secret \
    --destination 5550000 --calls "$CALLS" --lines 100 --clients 10 \
    --concurrency "$CONCURRENCY" --ws-commands --quiet
  ;;
*)
  echo "usage: bench.sh rate|hold|latency" >&2
  exit 2
  ;;
esac
