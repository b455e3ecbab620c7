#!/usr/bin/env bash
# Measures one node against a cluster of three (R3) on this machine, with
# `twinhub bench` as the load: the same scenarios against a single node,
# then against three nodes behind HAProxy. Every process shares the
# machine's cores, so the ratio shows what replication costs here, not
# what three machines would give.
#
#   scripts/bench-cluster.sh [SCENARIO...]    (default: telemetry reported twin-read)
#
# Environment: TWINHUB_BIN (default: go build), DURATION (default 20s),
# OUT (folder for the JSON reports and logs, default a temporary one).
# Addresses: 127.0.0.94 (one node), 127.0.0.91-93 (the cluster), 127.0.0.90
# (HAProxy). Needs root for ports 443, 5671 and 8883, and Debian's haproxy.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(telemetry reported twin-read)
duration="${DURATION:-20s}"
out="${OUT:-$(mktemp -d /tmp/twinhub-bench-cluster-XXXXXX)}"
mkdir -p "$out"
bin="${TWINHUB_BIN:-}"
if [[ -z "$bin" ]]; then
	bin="$out/twinhub"
	(cd "$root" && go build -o "$bin" ./cmd/twinhub)
fi
haproxy="$(command -v haproxy || echo /usr/sbin/haproxy)"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# ready waits until the hub of data folder $1 has written serve.json.
ready() {
	for _ in $(seq 600); do
		[[ -s "$1/serve.json" ]] && return 0
		sleep 0.1
	done
	echo "the hub in $1 did not start; its log:" >&2
	cat "$1.log" >&2
	return 1
}

serve() { # data-dir address extra-flags...
	local dir="$1" addr="$2"
	shift 2
	"$bin" serve --data "$dir" --https-addr "$addr:443" --mqtt-addr "$addr:8883" --amqp-addr "$addr:5671" "$@" >"$dir.log" 2>&1 &
	pids+=($!)
}

bench() { # label connection-string ca pid
	local label="$1" cs="$2" ca="$3" pid="$4"
	for s in "${scenarios[@]}"; do
		echo "== $label: $s"
		"$bin" bench "$s" --no-baselines --duration "$duration" --connection-string "$cs" --ca "$ca" \
			${pid:+--hub-pid "$pid"} --json "$out/$label-$s.json" | tee "$out/$label-$s.txt"
	done
}

# One node.
one="$out/one"
serve "$one" 127.0.0.94 --hostname 127.0.0.94
ready "$one"
bench one "$("$bin" --data "$one" connection-string)" "$one/ca.pem" "${pids[-1]}"
kill "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true

# Three nodes, R3, behind HAProxy on 127.0.0.90.
routes=nats://127.0.0.91:6222,nats://127.0.0.92:6222,nats://127.0.0.93:6222
"$bin" --data "$out/n1" ca init >/dev/null
for i in 2 3; do
	mkdir -p "$out/n$i"
	cp "$out/n1/ca.pem" "$out/n1/ca-key.pem" "$out/n$i/"
done
for i in 1 2 3; do
	serve "$out/n$i" "127.0.0.9$i" --hostname 127.0.0.90 --cluster "127.0.0.9$i:6222" --routes "$routes" --replicas 3
done
for i in 1 2 3; do ready "$out/n$i"; done
cfg="$out/haproxy.cfg"
"$bin" cluster haproxy --front 127.0.0.90 127.0.0.91 127.0.0.92 127.0.0.93 >"$cfg"

"$haproxy" -db -f "$cfg" >"$out/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.90/443) 2>/dev/null && break
	sleep 0.1
done
bench three "$("$bin" --data "$out/n1" connection-string)" "$out/n1/ca.pem" ""
"$bin" --data "$out/n1" cluster status
echo "reports in $out"
