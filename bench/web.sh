#!/usr/bin/env bash
# bench/web.sh - the reader site against nginx serving the same bytes, with wrk,
# interleaved in one run (`make bench-web`).
#
# One `oneblog-cms serve` with the demo content (SQLite in a temp dir, a private
# EPMD port) and two oneblog-client nodes in front of it:
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
ONEBLOG_DATA_DIR="$T/cms" ONEBLOG_CMS_NODE=cms@127.0.0.1 ONEBLOG_ADMIN=0 \
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
PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$NPORT/" && break; sleep 0.05; done
for path in / "/$POST/"; do
    for port in "$CPORT" "$UPORT"; do
        cmp -s <(curl -s -H "$COOKIE" "http://127.0.0.1:$NPORT$path") \
               <(curl -s -H "$COOKIE" "http://127.0.0.1:$port$path") ||
            die "nginx and the client on $port serve different bytes for $path"
    done
done
echo "page bytes: home $(wc -c <"$T/www/index.html"), post $(wc -c <"$T/www/$POST/index.html")" >&2

# run_wrk PORT PATH: prints "rps p99_ms"; any non-2xx answer or socket error stops the bench.
run_wrk() {
    local out rps p99 unit
    out=$("${PIN1[@]}" wrk -t1 -c"$CONNS" -d"$DURATION"s --latency -H "$COOKIE" "http://127.0.0.1:$1$2")
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then die "errors on port $1 $2: $out"; fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    read -r p99 unit < <(awk '$1 == "99%" {v=$2; u=v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v); print v, u}' <<<"$out")
    case $unit in
        us) p99=$(awk -v v="$p99" 'BEGIN {printf "%.3f", v / 1000}') ;;
        ms) ;;
        s) p99=$(awk -v v="$p99" 'BEGIN {printf "%.3f", v * 1000}') ;;
    esac
    echo "$rps $p99"
}

declare -A PORT=([nginx]=$NPORT [cached]=$CPORT [uncached]=$UPORT)
declare -A PATHOF=([home]=/ [post]="/$POST/")
declare -A RPS P99
CR=() UR=()
for sys in nginx cached uncached; do run_wrk "${PORT[$sys]}" / >/dev/null; done # warm-up
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2 == 1)); then order="nginx cached uncached"; else order="uncached cached nginx"; fi
    for page in home post; do
        declare -A this=()
        for sys in $order; do
            read -r rps p99 < <(run_wrk "${PORT[$sys]}" "${PATHOF[$page]}")
            this[$sys]=$rps
            RPS[$sys,$page]="${RPS[$sys,$page]:-} $rps"
            P99[$sys,$page]="${P99[$sys,$page]:-} $p99"
            echo "round $r $page $sys: rps $rps p99_ms $p99" >&2
        done
        CR+=("$(awk -v a="${this[cached]}" -v b="${this[nginx]}" 'BEGIN {printf "%.4f", a / b}')")
        UR+=("$(awk -v a="${this[uncached]}" -v b="${this[nginx]}" 'BEGIN {printf "%.4f", a / b}')")
        unset this
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
printf 'cached_page_rps_vs_nginx: %.3f\n' "$(median "${CR[@]}")"
printf 'uncached_page_rps_vs_nginx: %.3f\n' "$(median "${UR[@]}")"
echo "rounds: $ROUNDS"
