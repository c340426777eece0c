#!/usr/bin/env bash
# cluster_ecs.sh BUILD - the `ecs` discovery strategy against a LOCAL FAKE of the
# ECS API (tests/integ/ecs_fake.py on 127.0.0.1): AWS cannot be reached from
# where this was written, so what is verified here is our client against the
# documented request/response format, with the fake recomputing every SigV4
# signature in Python (the signer itself is checked against AWS's own test
# vectors in tests/unit/cnode/sigv4_test.c). Nothing here talks to AWS.
#
# The fake lists 250 running tasks: three are our nodes (127.0.0.2..4, one zone
# each), the other 247 sit at 127.0.1.x where nobody listens. Nodes run
# EPMD-less on one distribution port, as ECS tasks of one service would.
#   - each node lists all 250 tasks (3 ListTasks pages, DescribeTasks by 100 and
#     50: the fake saw every ARN described), 249 without itself;
#   - the three form a mesh and see each other's services;
#   - credentials come from the container endpoint: RELATIVE_URI for n1 and n2
#     (base overridden), FULL_URI + Authorization token for n3; they expire
#     after 303 s and the 300 s refresh margin makes nodes fetch new ones every
#     ~3 s (every request stays valid);
#   - a node whose secret is wrong is rejected by the fake (logged there) and
#     logs AWS's error (InvalidSignatureException), listing nobody;
#   - throttling: while the fake answers ThrottlingException, nodes log it,
#     back off and keep their last list; then they recover;
#   - DescribeTasks with 101 ARNs gets the documented error shape;
#   - n3 has no ONEBLOG_CLUSTER_ZONE: it warns that its task is in us-east-1c.
. "$(dirname "$0")/dist_lib.sh" "$1"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE \
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI \
    AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE

FULL_TOKEN=tok-$RANDOM$RANDOM
start_bg fake python3 "$HERE/ecs_fake.py" --port-file "$T/fake.port" --tasks 250 \
    --nodes 127.0.0.2,127.0.0.3,127.0.0.4 --creds-ttl 303 \
    --env-key AKIDENVEXAMPLE:the-right-secret --full-token "$FULL_TOKEN"
for _ in $(seq 1 100); do [ -s "$T/fake.port" ] && break; sleep 0.05; done
FAKE_PORT=$(cat "$T/fake.port" 2>/dev/null)
check "fake ECS endpoint is up" test -n "$FAKE_PORT"
[ -n "$FAKE_PORT" ] || finish
FAKE=http://127.0.0.1:$FAKE_PORT

DIST_PORT=$(free_port)
export ONEBLOG_COOKIE=ecs-$RANDOM ONEBLOG_EPMD_LESS=1 ONEBLOG_DIST_PORT=$DIST_PORT
export ONEBLOG_CLUSTER_STRATEGY=ecs ONEBLOG_CLUSTER_POLL_MS=500
export ONEBLOG_CLUSTER_BACKOFF_MIN_MS=500 ONEBLOG_CLUSTER_BACKOFF_MAX_MS=3000
export ONEBLOG_CLUSTER_ECS_CLUSTER=oneblog ONEBLOG_CLUSTER_ECS_SERVICE=oneblog-web
export ONEBLOG_CLUSTER_ECS_ENDPOINT=$FAKE AWS_REGION=us-east-1 ONEBLOG_CLUSTER_DEBUG=1
B=ecsnode

node() { # node LOGNAME IP SERVICES [extra env...]
    local log=$1 ip=$2 svcs=$3
    shift 3
    start_bg "$log" env ONEBLOG_NODE="$B@$ip" CLUSTER_SERVICES="$svcs" "$@" \
        "$BIN/test-cluster_node"
}
REL=(ONEBLOG_CLUSTER_ECS_CREDENTIALS_BASE="$FAKE")
node n1 127.0.0.2 cms:1.0 "${REL[@]}" AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/n1 \
    ONEBLOG_CLUSTER_ZONE=us-east-1a
node n2 127.0.0.3 cms:1.0 "${REL[@]}" AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/n2 \
    ONEBLOG_CLUSTER_ZONE=us-east-1b
node n3 127.0.0.4 recs:0.3 AWS_CONTAINER_CREDENTIALS_FULL_URI="$FAKE/full/credentials" \
    AWS_CONTAINER_AUTHORIZATION_TOKEN="$FULL_TOKEN"

for n in n1 n2 n3; do
    check "$n: lists 249 tasks, 2 up, 3 members" wait_log $n "view up=2 listed=249 members=3 " 30
    check "$n: 250 tasks seen in 3 pages" wait_log $n "ecs discovery: 250 task\(s\) in 3 page\(s\): 250 with an address" 5
done
check "fake: 3 ListTasks pages (100, 100, 50)" bash -c \
    "grep -q 'ListTasks page=1 start=0 returned=100 next=yes' '$T/fake.log' &&
     grep -q 'ListTasks page=2 start=100 returned=100 next=yes' '$T/fake.log' &&
     grep -q 'ListTasks page=3 start=200 returned=50 next=no' '$T/fake.log'"
check "fake: DescribeTasks in batches of 100, 100, 50, every ARN described" bash -c \
    "grep -q 'DescribeTasks n=100 ' '$T/fake.log' && grep -q 'DescribeTasks n=50 ' '$T/fake.log' &&
     grep -q 'described-total=250\$' '$T/fake.log' && ! grep -q 'DescribeTasks n=1[0-9][1-9]' '$T/fake.log'"
check "fake: no request was rejected" bash -c "! grep -q REJECTED '$T/fake.log'"
check "n1 sees services of n2 and n3 (registry)" wait_log n1 "nodes=.*$B@127.0.0.3.*$B@127.0.0.4|nodes=.*$B@127.0.0.4.*$B@127.0.0.3" 5
check "credentials came from the relative-URI endpoint" \
    grep -q 'creds issued ASIAFAKE.* via relative-uri' "$T/fake.log"
check "credentials came from the full-URI endpoint with its token" \
    grep -q 'creds issued ASIAFAKE.* via full-uri' "$T/fake.log"
check "n1 logs where its credentials came from" grep -q "credentials ASIAFAKE.* from $FAKE/v2/credentials/n1" "$T/n1.log"
check "requests were signed with endpoint credentials (session token)" \
    grep -q 'ListTasks signed by ASIAFAKE' "$T/fake.log"
check "credentials refreshed before expiry (n1 fetched more than once)" wait_until 30 bash -c \
    "[ \$(grep -c 'credentials ASIAFAKE.* from $FAKE/v2/credentials/n1' '$T/n1.log') -ge 2 ]"
check "still no rejected request after refreshes" bash -c "! grep -q REJECTED '$T/fake.log'"
check "n3 warns that its task's zone is not its configured zone" \
    grep -q "our task is in zone us-east-1c but ONEBLOG_CLUSTER_ZONE is ''" "$T/n3.log"
check "zones are logged" grep -q "tasks by zone: us-east-1a=84 us-east-1b=83 us-east-1c=83" "$T/n1.log"

# A node with the wrong secret: the fake rejects it and says so, the node logs
# AWS's error and lists nobody.
node bad 127.0.0.5 cms:1.0 AWS_ACCESS_KEY_ID=AKIDENVEXAMPLE AWS_SECRET_ACCESS_KEY=wrong-secret
check "fake rejects the bad signature and logs it" wait_log fake \
    "REJECTED InvalidSignatureException from AKIDENVEXAMPLE" 10
check "bad node logs AWS's error" wait_log bad \
    "ListTasks: InvalidSignatureException: The request signature we calculated does not match" 5
check "bad node logs the failed poll and backs off" wait_log bad "poll failed .*next in" 5
check "bad node lists nobody" bash -c "! grep -q 'listed=[1-9]' '$T/bad.log'"
# The same key with the right secret is accepted (environment credentials).
node envok 127.0.0.6 cms:1.0 AWS_ACCESS_KEY_ID=AKIDENVEXAMPLE AWS_SECRET_ACCESS_KEY=the-right-secret
check "environment credentials: a node lists the 250 tasks" wait_log envok \
    "250 task\(s\) in 3 page\(s\)" 10

# Throttling: the next 40 ECS calls fail; the nodes keep their list, then recover.
curl -sf "$FAKE/ctl/fail?n=40&type=ThrottlingException" >/dev/null
check "n1 logs throttling" wait_log n1 "ThrottlingException: Rate exceeded" 10
check "n1 logs the failed poll, keeping its list" wait_log n1 "ecs discovery failed: .*keeping 249 node" 10
check "n1 still has its mesh while throttled" bash -c \
    "grep -a '^view ' '$T/n1.log' | tail -n 1 | grep -q 'view up=2 listed=249 '"
check "n1 recovers" wait_log n1 "ecs discovery: recovered after" 40
check "n1 list and mesh unchanged after recovery" bash -c \
    "grep -a '^view ' '$T/n1.log' | tail -n 1 | grep -q 'view up=2 listed=249 '"

# The documented error shape for more than 100 ARNs (signed like our client
# would, by the fake's own signer code path run in reverse: a Python client).
check "DescribeTasks with 101 ARNs: InvalidParameterException" python3 - "$FAKE" <<'EOF'
import datetime, hashlib, hmac, json, sys, urllib.request
url = sys.argv[1] + "/"
body = json.dumps({"cluster": "oneblog",
                   "tasks": ["arn:aws:ecs:us-east-1:123456789012:task/oneblog/%032x" % i
                             for i in range(1, 102)]}).encode()
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
host = url.split("/")[2]
hdrs = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": date,
        "x-amz-target": "AmazonEC2ContainerServiceV20141113.DescribeTasks"}
signed = ";".join(sorted(hdrs))
creq = "\n".join(["POST", "/", "", "".join("%s:%s\n" % (k, hdrs[k]) for k in sorted(hdrs)),
                  signed, hashlib.sha256(body).hexdigest()])
scope = date[:8] + "/us-east-1/ecs/aws4_request"
sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(creq.encode()).hexdigest()])
k = ("AWS4" + "the-right-secret").encode()
for m in (date[:8], "us-east-1", "ecs", "aws4_request"):
    k = hmac.new(k, m.encode(), hashlib.sha256).digest()
sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(url, body, method="POST")
for name, v in hdrs.items():
    if name != "host":
        req.add_header(name, v)
req.add_header("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDENVEXAMPLE/%s, "
               "SignedHeaders=%s, Signature=%s" % (scope, signed, sig))
try:
    urllib.request.urlopen(req, timeout=5)
    sys.exit(1)
except urllib.error.HTTPError as e:
    doc = json.loads(e.read())
    sys.exit(0 if e.code == 400 and doc["__type"] == "InvalidParameterException" else 1)
EOF
check "fake logged the rejected oversize batch" grep -q "DescribeTasks REJECTED 101 ARNs" "$T/fake.log"
finish
