#!/usr/bin/env bash
# bench/web.sh - the reader site against nginx serving the same bytes, with wrk,
# interleaved in one run (`make bench-web`).
#
# One `oneblog-cms serve` with the demo content (SQLite in a temp dir, a private
# EPMD port; its embedded `recs` service off, so that the post page is the shared
# page with "Read next", the page this benchmark has always compared: with recs
# in the cluster each request of a post page is personalised - a recs call, a
# durable recs.request event and a get_posts call - and no longer a cacheable
# page nginx could serve from a file; tests/integ/client.sh does the same) and
# two oneblog-client nodes in front of it:
#   cached    the page cache on (the default): a page is rendered once
#   uncached  ONEBLOG_CACHE_MB=0: every request is CMS RPC calls (home: list_posts;
#             a post: get_post + list_posts for "Read next") and a template render
# and nginx (one worker, sendfile, keep-alive without a request limit) serving the
# byte-identical HTML of the home page and a post page, saved from the client
# (checked with cmp before measuring). wrk sends a reader cookie, as a returning
# reader's browser does, so the client does not mint one per request.
#
# CPUs: with two or more, every server process (nginx's worker, the client, and
# for the uncached path the CMS too: the whole blog on one core) runs on CPU 0
# and wrk on CPU 1; PIN=0 lets the scheduler place everything.
#
# Each round runs wrk on every (page, system) pair, the order alternating between
# rounds, because this machine's speed drifts. stdout: `name: value` lines:
#   nginx_rps_{home,post}, cached_rps_{home,post}, uncached_rps_{home,post} (medians)
#   cached_page_rps_vs_nginx, uncached_page_rps_vs_nginx: the median, over both
#   pages and every round, of ours / nginx within the round (back-to-back runs)
#   cached_p99_ms_post, nginx_p99_ms_post, rounds
#   {nginx,cached,uncached}_cpu_us_{home,post}: CPU time per request (user +
#   system, /proc/PID/stat) of nginx's worker, of the client, and for uncached of
#   the client plus the CMS node; cached_page_cpu_vs_nginx and
#   uncached_page_cpu_vs_nginx: medians of nginx's CPU per request / ours. On a
#   machine shared with other work the request rates are skewed (CPU 0 is shared
#   by nginx's one process, or by our two); CPU per request is not, so these say
#   what the rates would be with the core to each system alone.
# stderr: every run's raw figures.
#
# Environment: ROUNDS (3), DURATION (3, seconds per wrk run), CONNS (64), PIN (1),
# ONEBLOG_BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CONNS=${CONNS:-64}
PIN=${PIN:-1}
B=${ONEBLOG_BUILD:-build}
CMS=$B/bin/oneblog-cms
CLIENT=$B/bin/oneblog-client
POST=why-we-built-our-blog-on-the-beam-model-in-c
COOKIE="Cookie: ob_rid=0123456789abcdef0123456789abcdef"

die() { echo "bench/web.sh: error: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
[[ -x $CMS && -x $CLIENT ]] || die "$CMS and $CLIENT must be built (make)"
command -v wrk >/dev/null || die "wrk not found (scripts/install-deps.sh installs it)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found (scripts/install-deps.sh installs it)"

T=$(mktemp -d /tmp/bench-web.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

read -r NPORT CPORT UPORT < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
PIN0=() PIN1=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN0=(taskset -c 0)
    PIN1=(taskset -c 1)
fi

export ERL_EPMD_PORT=$((20000 + RANDOM % 20000)) ONEBLOG_COOKIE=bench-web-$RANDOM$RANDOM
export ONEBLOG_LOG_LEVEL=warn ONEBLOG_CLUSTER_NODES=cms@127.0.0.1
ONEBLOG_DATA_DIR="$T/cms" ONEBLOG_CMS_NODE=cms@127.0.0.1 ONEBLOG_ADMIN=0 ONEBLOG_RECS=off \
    "${PIN0[@]}" "$CMS" serve >"$T/cms.out" 2>&1 &
CMS_PID=$!
PIDS+=("$CMS_PID")
for _ in $(seq 100); do grep -qs serving "$T/cms.out" && break; sleep 0.1; done
grep -qs serving "$T/cms.out" || die "cms did not start: $(cat "$T/cms.out")"
SITE=http://127.0.0.1:$CPORT
ONEBLOG_HTTP_PORT=$CPORT ONEBLOG_CLIENT_NODE=cached@127.0.0.1 ONEBLOG_SITE_URL=$SITE \
    "${PIN0[@]}" "$CLIENT" >"$T/cached.out" 2>&1 &
CACHED_PID=$!
PIDS+=("$CACHED_PID")
# Same site URL, so both clients render byte-identical pages.
ONEBLOG_HTTP_PORT=$UPORT ONEBLOG_CLIENT_NODE=uncached@127.0.0.1 ONEBLOG_SITE_URL=$SITE \
    ONEBLOG_CACHE_MB=0 "${PIN0[@]}" "$CLIENT" >"$T/uncached.out" 2>&1 &
UNCACHED_PID=$!
PIDS+=("$UNCACHED_PID")
for port in "$CPORT" "$UPORT"; do
    up=0
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && { up=1; break; }
        sleep 0.1
    done
    [ $up = 1 ] || die "client on $port not ready: $(cat "$T/cached.out" "$T/uncached.out")"
done

# nginx serves what the client renders, byte for byte.
mkdir -p "$T/www/$POST" "$T/nginx"
curl -sf -H "$COOKIE" "$SITE/" >"$T/www/index.html"
curl -sf -H "$COOKIE" "$SITE/$POST/" >"$T/www/$POST/index.html"
cat >"$T/nginx/nginx.conf" <<NGX
worker_processes 1;
error_log $T/nginx/error.log;
pid $T/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    types { text/html html; }
    default_type text/html;
    server { listen 127.0.0.1:$NPORT; root $T/www; }
}
NGX
"${PIN0[@]}" "$NGINX" -c "$T/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$NPORT/" && break; sleep 0.05; done
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
[ -n "$NGINX_WORKER" ] || die "nginx has no worker process"
for path in / "/$POST/"; do
    for port in "$CPORT" "$UPORT"; do
        cmp -s <(curl -s -H "$COOKIE" "http://127.0.0.1:$NPORT$path") \
               <(curl -s -H "$COOKIE" "http://127.0.0.1:$port$path") ||
            die "nginx and the client on $port serve different bytes for $path"
    done
done
echo "page bytes: home $(wc -c <"$T/www/index.html"), post $(wc -c <"$T/www/$POST/index.html")" >&2

# CPU time (user + system, clock ticks) used so far by the processes given.
TICK=$(getconf CLK_TCK)
cpu_ticks() {
    local p t=0
    for p in "$@"; do
        # fields after the ")" that ends the command name: utime is the 12th
        t=$((t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
    done
    echo "$t"
}

# run_wrk PORT PATH PIDS...: prints "rps p99_ms cpu_us_per_request" (the CPU of
# PIDS); any non-2xx answer or socket error stops the bench.
run_wrk() {
    local out rps p99 unit n t0 t1 port=$1 path=$2
    shift 2
    t0=$(cpu_ticks "$@")
    out=$("${PIN1[@]}" wrk -t1 -c"$CONNS" -d"$DURATION"s --latency -H "$COOKIE" "http://127.0.0.1:$port$path")
    t1=$(cpu_ticks "$@")
    set -- "$port" "$path"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then die "errors on port $1 $2: $out"; fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    read -r p99 unit < <(awk '$1 == "99%" {v=$2; u=v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v); print v, u}' <<<"$out")
    case $unit in
        us) p99=$(awk -v v="$p99" 'BEGIN {printf "%.3f", v / 1000}') ;;
        ms) ;;
        s) p99=$(awk -v v="$p99" 'BEGIN {printf "%.3f", v * 1000}') ;;
    esac
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "$rps $p99 $(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$TICK" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')"
}

declare -A PORT=([nginx]=$NPORT [cached]=$CPORT [uncached]=$UPORT)
declare -A CPUOF=([nginx]=$NGINX_WORKER [cached]=$CACHED_PID [uncached]="$UNCACHED_PID $CMS_PID")
declare -A PATHOF=([home]=/ [post]="/$POST/")
declare -A RPS P99 CPU
CR=() UR=() CCR=() UCR=()
# shellcheck disable=SC2086
for sys in nginx cached uncached; do run_wrk "${PORT[$sys]}" / ${CPUOF[$sys]} >/dev/null; done # warm-up
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2 == 1)); then order="nginx cached uncached"; else order="uncached cached nginx"; fi
    for page in home post; do
        declare -A this=() thiscpu=()
        for sys in $order; do
            # shellcheck disable=SC2086
            read -r rps p99 cpu < <(run_wrk "${PORT[$sys]}" "${PATHOF[$page]}" ${CPUOF[$sys]})
            this[$sys]=$rps
            thiscpu[$sys]=$cpu
            RPS[$sys,$page]="${RPS[$sys,$page]:-} $rps"
            P99[$sys,$page]="${P99[$sys,$page]:-} $p99"
            CPU[$sys,$page]="${CPU[$sys,$page]:-} $cpu"
            echo "round $r $page $sys: rps $rps p99_ms $p99 cpu_us $cpu" >&2
        done
        CR+=("$(awk -v a="${this[cached]}" -v b="${this[nginx]}" 'BEGIN {printf "%.4f", a / b}')")
        UR+=("$(awk -v a="${this[uncached]}" -v b="${this[nginx]}" 'BEGIN {printf "%.4f", a / b}')")
        CCR+=("$(awk -v a="${thiscpu[cached]}" -v b="${thiscpu[nginx]}" 'BEGIN {printf "%.4f", b / a}')")
        UCR+=("$(awk -v a="${thiscpu[uncached]}" -v b="${thiscpu[nginx]}" 'BEGIN {printf "%.4f", b / a}')")
        unset this thiscpu
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for sys in nginx cached uncached; do
    for page in home post; do
        # shellcheck disable=SC2086
        echo "${sys}_rps_$page: $(median ${RPS[$sys,$page]})"
    done
done
# shellcheck disable=SC2086
echo "nginx_p99_ms_post: $(median ${P99[nginx,post]})"
# shellcheck disable=SC2086
echo "cached_p99_ms_post: $(median ${P99[cached,post]})"
# shellcheck disable=SC2086
echo "uncached_p99_ms_post: $(median ${P99[uncached,post]})"
for sys in nginx cached uncached; do
    for page in home post; do
        # shellcheck disable=SC2086
        echo "${sys}_cpu_us_$page: $(median ${CPU[$sys,$page]})"
    done
done
printf 'cached_page_cpu_vs_nginx: %.3f\n' "$(median "${CCR[@]}")"
printf 'uncached_page_cpu_vs_nginx: %.3f\n' "$(median "${UCR[@]}")"
printf 'cached_page_rps_vs_nginx: %.3f\n' "$(median "${CR[@]}")"
printf 'uncached_page_rps_vs_nginx: %.3f\n' "$(median "${UR[@]}")"
echo "rounds: $ROUNDS"
