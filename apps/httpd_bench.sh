#!/usr/bin/env bash
# usmp-httpd against nginx on loopback, the same small response ("Hello,
# world!\n"), each pinned in turn to the same cores, each loaded by wrk with
# the same connections for the same time; prints requests/s and latency
# percentiles side by side.  Needs wrk and nginx (Debian packages wrk,
# nginx-light); not run by ctest (a benchmark wants a quiet machine).
#
#     bash apps/httpd_bench.sh [BUILD_DIR]
#
# Environment: CORES=0,1 (taskset list for the servers), CONNS=100,
# THREADS=2 (wrk), DURATION=10 (seconds), ROUNDS=2 (alternating runs),
# BASELINE=path of another usmp-httpd binary (an A/B of a change: it runs
# as "usmp-base" in the same rounds).
set -euo pipefail

build=${1:-build}
httpd=$build/apps/usmp-httpd
cores=${CORES:-0,1}
conns=${CONNS:-100}
threads=${THREADS:-2}
duration=${DURATION:-10}
rounds=${ROUNDS:-2}
ncores=$(tr ',' '\n' <<<"$cores" | wc -l)

for tool in wrk nginx taskset curl; do
	command -v "$tool" >/dev/null || { echo "httpd_bench: $tool is missing" >&2; exit 1; }
done
[[ -x $httpd ]] || { echo "httpd_bench: $httpd not built" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

port_usmp=18480
port_nginx=18481
port_base=18482
baseline=${BASELINE:-}
cat >"$tmp/nginx.conf" <<EOF
worker_processes $ncores;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  server {
    listen 127.0.0.1:$port_nginx;
    location / { default_type text/plain; return 200 "Hello, world!\n"; }
  }
}
EOF

taskset -c "$cores" "$httpd" --port "$port_usmp" --cpus "$ncores" >"$tmp/httpd.out" 2>&1 &
pids+=($!)
pid_usmp=$!
servers="usmp nginx"
if [[ -n $baseline ]]; then
	taskset -c "$cores" "$baseline" --port "$port_base" --cpus "$ncores" >"$tmp/base.out" 2>&1 &
	pids+=($!)
	pid_base=$!
	servers="usmp usmp-base nginx"
fi
taskset -c "$cores" nginx -c "$tmp/nginx.conf" &
pids+=($!)
pid_nginx=$!
for port in $port_usmp $port_nginx ${baseline:+$port_base}; do
	for _ in $(seq 50); do
		curl -sf "http://127.0.0.1:$port/" >/dev/null && break
		sleep 0.1
	done
done

# CPU time (user + system, clock ticks) of process $1 and its children
# (nginx's workers) so far.
cputime() {
	local p t=0
	for p in $1 $(pgrep -P "$1"); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}

# One wrk run: "requests/s p50 p90 p99 cpu-us/request".  The server's CPU
# time per request is the figure least disturbed by other load on the
# machine (requests/s and latencies move with whatever else runs).
measure() {
	local c0 c1 out
	c0=$(cputime "$2")
	out=$(wrk -t"$threads" -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$1/")
	c1=$(cputime "$2")
	awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" '
		/^ +50%/ {p50=$2} /^ +90%/ {p90=$2} /^ +99%/ {p99=$2}
		/^ +[0-9]+ requests in/ {n=$1}
		/^Requests\/sec/ {rps=$2}
		END {printf "%s %s %s %s %.1f\n", rps, p50, p90, p99,
		    (n > 0 ? c * 1e6 / hz / n : 0)}' <<<"$out"
}

printf '%-12s %6s %12s %10s %10s %10s %10s\n' server round requests/s p50 p90 p99 cpu-us/req
for r in $(seq "$rounds"); do
	for s in $servers; do
		case $s in
		usmp) port=$port_usmp pid=$pid_usmp ;;
		usmp-base) port=$port_base pid=$pid_base ;;
		nginx) port=$port_nginx pid=$pid_nginx ;;
		esac
		read -r rps p50 p90 p99 cpu < <(measure "$port" "$pid")
		printf '%-12s %6s %12s %10s %10s %10s %10s\n' "$s" "$r" "$rps" "$p50" "$p90" "$p99" "$cpu"
	done
done
echo "(wrk -t$threads -c$conns -d${duration}s; servers on cores $cores; $(uptime | sed 's/.*load/load/'))"
