#!/usr/bin/env bash
# tests/integ/prometheus.sh BUILD - a real Prometheus (Debian's 2.42, from
# scripts/install-deps.sh) scrapes both services every second and its query API
# returns their series: oneblog-client's /metrics on the reader site, and
# oneblog-cms's on ONEBLOG_METRICS_ADDR (docs/observability.md). The config is
# checked with promtool first. Everything on loopback, stopped by PID; about 15 s
# (Prometheus scrapes for the first time some 5 s after it starts). Ends with
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    bad "prometheus and promtool are installed (scripts/install-deps.sh)"
    summary
    exit 1
fi
# A bound on the whole run, to catch a hang: what is checked is that the series
# come, not how fast a loaded machine gets there (~15 s here, more under ASan).
deadline=$((SECONDS + 120))

CMS_M=$(free_port)
ONEBLOG_METRICS_ADDR=127.0.0.1:$CMS_M cms_start cms || { bad "cms starts"; summary; exit 1; }
client_start cms@127.0.0.1 || { bad "client starts"; summary; exit 1; }
check "client becomes ready (finds cms through the cluster)" wait_ready
# Some traffic: a miss then a hit on the cached page path, a 404.
for p in / / /tag/engineering/ /no-such-post/; do curl -s -o /dev/null "$BASE$p"; done
check "client: /metrics on the reader site" sh -c "curl -sf '$BASE/metrics' | grep -q '^client_cache_requests_total{result=\"hit\"} [1-9]'"
check "cms: /metrics on ONEBLOG_METRICS_ADDR" sh -c "curl -sf '127.0.0.1:$CMS_M/metrics' | grep -q '^cms_db_pool_connections{state=\"idle\"}'"

PROM=$(free_port)
cat >"$T/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: oneblog-client
    static_configs:
      - targets: ['127.0.0.1:$CLIENT_PORT']
  - job_name: oneblog-cms
    static_configs:
      - targets: ['127.0.0.1:$CMS_M']
EOF
check "promtool check config" promtool check config "$T/prometheus.yml"
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
    --web.listen-address=127.0.0.1:$PROM --log.level=warn >"$T/prom.out" 2>&1 &
PIDS+=($!)
API=http://127.0.0.1:$PROM/api/v1

# q QUERY -> the result array of an instant query (JSON), "" on failure.
q() { curl -s --max-time 10 -G "$API/query" --data-urlencode "query=$1" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"]=="success"; print(json.dumps(d["data"]["result"]))' 2>/dev/null; }
# has QUERY: at least one series.
has() { local r; r=$(q "$1"); [ -n "$r" ] && [ "$r" != "[]" ]; }
# eventually CMD...: CMD succeeds within 30 s (rate() needs two scrapes in its window).
eventually() {
    local until=$((SECONDS + 30))
    while [ $SECONDS -lt $until ]; do "$@" && return 0; sleep 0.5; done
    return 1
}

# Both targets up (value 1) - the first scrape comes ~5 s after the start.
up_both() {
    local until=$((SECONDS + 60))
    while [ $SECONDS -lt $until ]; do
        [ "$(q 'sum(up{job=~"oneblog-client|oneblog-cms"})' |
             python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["value"][1] if r else 0)' 2>/dev/null)" = 2 ] && return 0
        sleep 0.5
    done
    return 1
}
check "prometheus: up == 1 for the client and the cms" up_both
curl -s --max-time 10 "$API/targets" >"$T/targets.json"
check "prometheus: both targets healthy" python3 -c "
import json; t = json.load(open('$T/targets.json'))['data']['activeTargets']
h = {x['labels']['job']: x['health'] for x in t}
assert h == {'oneblog-client': 'up', 'oneblog-cms': 'up'}, h"

check "client: http_server_requests_total by route" has 'http_server_requests_total{job="oneblog-client",route="/",status="200"}'
check "client: page cache hits" has 'client_cache_requests_total{job="oneblog-client",result="hit"} > 0'
check "client: page cache bytes" has 'client_cache_bytes{job="oneblog-client"} > 0'
check "client: CMS calls by outcome (rpc_client_calls_total)" has 'rpc_client_calls_total{job="oneblog-client",peer="cms@127.0.0.1",outcome="ok"}'
check "client: breaker state per CMS node" has 'client_cms_breaker_state{job="oneblog-client",node="cms@127.0.0.1",state="closed"} == 1'
check "client: request latency histogram" eventually has 'histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{job="oneblog-client"}[1m])))'
check "cms: rpc_server_calls_total by method" has 'rpc_server_calls_total{job="oneblog-cms",service="cms",method="list_posts"}'
check "cms: database pool" has 'cms_db_pool_connections{job="oneblog-cms",state="idle"}'
check "cms: statement latency" has 'db_client_operation_duration_seconds_count{job="oneblog-cms",operation="SELECT"} > 0'
check "node: scheduler utilisation on both" sh -c "[ \"\$(curl -s -G '$API/query' --data-urlencode 'query=count(cnode_scheduler_cpu_seconds_total{job=~\"oneblog-.*\"})' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"data\"][\"result\"][0][\"value\"][1])')\" = 2 ]"
echo "    # $SECONDS s in all"
[ $SECONDS -lt $deadline ] && ok "within the time bound (120 s)" || bad "took longer than 120 s"
summary
