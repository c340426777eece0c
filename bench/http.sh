#!/usr/bin/env bash
# bench/http.sh - cnode-static (one libcnode node) against nginx (one worker) with
# wrk, on the same 10 KiB HTML file, interleaved in one run.
#
# Both servers run side by side on loopback ports for the whole run; each round
# runs wrk against one then the other, alternating which goes first (nginx first
# in odd rounds), because this machine's speed drifts (other work, CPU wake-up).
# With two or more CPUs the servers are pinned to CPU 0 and wrk (one thread) to
# CPU 1, so each server has one core to itself - both are single-threaded here -
# and the load generator does not steal from it; set PIN=0 to let the scheduler
# place everything.
#
# nginx: `worker_processes 1; sendfile on; access_log off;`, keep-alive without a
# request limit (keepalive_requests 1000000, as cnode-static has none), config in
# a temp dir, run as root in the foreground (-g 'daemon off;').
#
# stdout: `name: value` lines - medians over the rounds:
#   nginx_rps, static_rps, nginx_p99_ms, static_p99_ms,
#   static_rps_vs_nginx, static_p99_vs_nginx (ours / nginx: the median of the
#   per-round ratios, each round's two runs being back to back),
#   nginx_cpu_us_per_req, static_cpu_us_per_req, static_cpu_vs_nginx (the server's
#   CPU time per request: steadier than req/s when other work shares the
#   machine), rounds
# stderr: every round's raw figures.
#
# Environment: ROUNDS (3), DURATION (5, seconds per wrk run), CONNS (64),
# PIN (1), STATIC_ARGS (extra cnode-static flags, e.g. --shared-stack),
# ONEBLOG_BUILD (build). `make bench-http` builds cnode-static first.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
PIN=${PIN:-1}
STATIC_ARGS=${STATIC_ARGS:-}
B=${ONEBLOG_BUILD:-build}
STATIC=$B/bin/cnode-static

die() { echo "bench/http.sh: error: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
[[ -x $STATIC ]] || die "$STATIC not built (make bench-http builds it)"
command -v wrk >/dev/null || die "wrk not found (scripts/install-deps.sh installs it)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found (scripts/install-deps.sh installs it)"

T=$(mktemp -d /tmp/bench-http.XXXXXX)
chmod 755 "$T" # nginx's worker runs as www-data and must reach the page
NPID= SPID=
cleanup() {
    for p in $NPID $SPID; do
        kill "$p" 2>/dev/null || true
    done
    for p in $NPID $SPID; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT

# The page: 10 KiB of HTML.
mkdir -p "$T/www"
{
    echo '<!doctype html><html><head><title>bench</title></head><body>'
    for i in $(seq 1 400); do echo "<p>Paragraph $i of the benchmark page, some text.</p>"; done
} >"$T/www/index.html"
truncate -s 10240 "$T/www/index.html"

# Two free loopback ports from the kernel.
read -r NPORT SPORT < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

mkdir -p "$T/nginx"
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $T/nginx/error.log;
pid $T/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush off;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    types { text/html html; }
    server {
        listen 127.0.0.1:$NPORT;
        root $T/www;
    }
}
EOF

SRV_PIN=() WRK_PIN=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    SRV_PIN=(taskset -c 0)
    WRK_PIN=(taskset -c 1)
fi

"${SRV_PIN[@]}" "$NGINX" -c "$T/nginx/nginx.conf" -g 'daemon off;' &
NPID=$!
# shellcheck disable=SC2086
"${SRV_PIN[@]}" "$STATIC" --port "$SPORT" $STATIC_ARGS "$T/www" >"$T/static.out" 2>&1 &
SPID=$!

for port in "$NPORT" "$SPORT"; do
    up=0
    for _ in $(seq 1 100); do
        if curl -sf -o /dev/null "http://127.0.0.1:$port/index.html"; then up=1; break; fi
        sleep 0.05
    done
    [ $up = 1 ] || die "server on port $port did not come up: $(tail -n 3 "$T/static.out" "$T/nginx/error.log" 2>&1)"
done
cmp -s <(curl -s "http://127.0.0.1:$NPORT/index.html") <(curl -s "http://127.0.0.1:$SPORT/index.html") ||
    die "the two servers serve different bytes"

# CPU time (clock ticks) a process has used; per request it is a figure that
# other load on the machine disturbs much less than requests per second.
NWORKER=$(pgrep -P "$NPID" nginx | head -n 1)
[ -n "$NWORKER" ] || die "no nginx worker process"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run_wrk NAME PORT SECONDS PID: prints "rps p99_ms cpu_us_per_request".
run_wrk() {
    local out rps p99 unit t0 t1 n
    t0=$(ticks "$4")
    out=$("${WRK_PIN[@]}" wrk -t1 -c"$CONNS" -d"$3"s --latency "http://127.0.0.1:$2/index.html")
    t1=$(ticks "$4")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    if grep -q 'Non-2xx' <<<"$out"; then die "$1 answered errors: $out"; fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    read -r p99 unit < <(awk '$1 == "99%" {v=$2; u=v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v); print v, u}' <<<"$out")
    case $unit in
        us) p99=$(awk -v v="$p99" 'BEGIN {printf "%.3f", v / 1000}') ;;
        ms) ;;
        s) p99=$(awk -v v="$p99" 'BEGIN {printf "%.3f", v * 1000}') ;;
        *) die "cannot read wrk's p99 from: $out" ;;
    esac
    echo "$rps $p99 $(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')"
}

# Warm both up (page cache, gzip-free path, connection set-up).
run_wrk nginx "$NPORT" 1 "$NWORKER" >/dev/null
run_wrk static "$SPORT" 1 "$SPID" >/dev/null

declare -a N_RPS N_P99 N_CPU S_RPS S_P99 S_CPU
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2 == 1)); then order="nginx static"; else order="static nginx"; fi
    for sys in $order; do
        if [ "$sys" = nginx ]; then
            read -r rps p99 cpu < <(run_wrk nginx "$NPORT" "$DURATION" "$NWORKER")
            N_RPS+=("$rps") N_P99+=("$p99") N_CPU+=("$cpu")
        else
            read -r rps p99 cpu < <(run_wrk static "$SPORT" "$DURATION" "$SPID")
            S_RPS+=("$rps") S_P99+=("$p99") S_CPU+=("$cpu")
        fi
        echo "round $r $sys: rps $rps p99_ms $p99 cpu_us_per_req $cpu" >&2
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
nr=$(median "${N_RPS[@]}")
sr=$(median "${S_RPS[@]}")
np=$(median "${N_P99[@]}")
sp=$(median "${S_P99[@]}")
echo "nginx_rps: $nr"
echo "static_rps: $sr"
echo "nginx_p99_ms: $np"
echo "static_p99_ms: $sp"
# Ratios: the median of each round's ratio, ours / nginx. The two runs of a round
# are back to back, so a slow spell of the machine hits both; pairing them
# cancels more of it than dividing the two medians would.
ratio() { # ratio NAME OURS... -- NGINX...
    local name=$1 i
    shift
    local -a ours=() theirs=() r=()
    while [ "$1" != -- ]; do ours+=("$1"); shift; done
    shift
    theirs=("$@")
    for i in "${!ours[@]}"; do
        r+=("$(awk -v a="${ours[$i]}" -v b="${theirs[$i]}" 'BEGIN {printf "%.4f", a / b}')")
    done
    printf '%s: %.3f\n' "$name" "$(median "${r[@]}")"
}
ratio static_rps_vs_nginx "${S_RPS[@]}" -- "${N_RPS[@]}"
ratio static_p99_vs_nginx "${S_P99[@]}" -- "${N_P99[@]}"
echo "nginx_cpu_us_per_req: $(median "${N_CPU[@]}")"
echo "static_cpu_us_per_req: $(median "${S_CPU[@]}")"
ratio static_cpu_vs_nginx "${S_CPU[@]}" -- "${N_CPU[@]}"
echo "rounds: $ROUNDS"
