#!/usr/bin/env python3
"""ecs_fake.py - a local stand-in for the AWS ECS JSON API and the ECS container
credentials endpoint, for tests/integ/cluster_ecs.sh (python3 standard library only).

AWS cannot be reached from where this was written, so the ecs discovery strategy
is tested against this fake. It follows the documented formats: the JSON 1.1
protocol (POST /, X-Amz-Target AmazonEC2ContainerServiceV20141113.ListTasks /
.DescribeTasks, Content-Type application/x-amz-json-1.1, errors as HTTP 400 with
{"__type": ..., "message": ...}), ListTasks pages of at most 100 ARNs chained by
nextToken, DescribeTasks limited to 100 ARNs, tasks with attachments[].details
(privateIPv4Address) and availabilityZone, and the container credentials document
(AccessKeyId, SecretAccessKey, Token, Expiration).

Every ECS request must carry a valid SigV4 Authorization header: the signature is
recomputed here (hashlib/hmac) from the request as received, with the secret of
the access key it names (the --env-key pair, or credentials this fake issued and
that have not expired; those also need their X-Amz-Security-Token, signed).

  ecs_fake.py --port-file F [--tasks 250] [--nodes ip,ip,...] [--zones a,b,c]
              [--region us-east-1] [--cluster C] [--service S]
              [--env-key AKID:SECRET] [--full-token TOKEN] [--creds-ttl SECONDS]

Endpoints: POST / (ECS); GET /v2/credentials/ID (relative URI, no auth);
GET /full/credentials (full URI: Authorization must be --full-token);
GET /ctl/fail?n=N&type=T (the next N ECS calls fail with T, e.g.
ThrottlingException). The first len(--nodes) tasks have those IPs, the others
127.0.1.x (nobody listens there). One log line per request on stdout.
"""
import argparse
import datetime
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = "AmazonEC2ContainerServiceV20141113."
LOCK = threading.Lock()
ARGS = None
ISSUED = {}        # access key -> (secret, token, expiry epoch)
ISSUED_N = [0]
DESCRIBED = set()  # every ARN ever described
FAIL = {"n": 0, "type": "ThrottlingException"}


def log(msg):
    with LOCK:
        sys.stdout.write(msg + "\n")
        sys.stdout.flush()


# ---- SigV4, recomputed from the request as received ------------------------------

def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _enc(s, safe=""):
    return urllib.parse.quote(s, safe="-_.~" + safe)


def canonical_request(method, raw_path, headers, signed, body):
    path, _, query = raw_path.partition("?")
    segs = [_enc(urllib.parse.unquote(p)) for p in path.split("/") if p not in ("", ".")]
    cpath = "/" + "/".join(segs) + ("/" if path.endswith("/") and segs else "")
    pairs = []
    for part in query.split("&") if query else []:
        k, _, v = part.partition("=")
        pairs.append((_enc(urllib.parse.unquote(k)), _enc(urllib.parse.unquote(v))))
    cquery = "&".join(k + "=" + v for k, v in sorted(pairs))
    lines = []
    for name in signed:
        vals = headers.get_all(name) or []
        vals = [" ".join(v.split()) for v in vals]
        lines.append(name + ":" + ",".join(vals) + "\n")
    return "\n".join([method, cpath, cquery, "".join(lines), ";".join(signed),
                      hashlib.sha256(body).hexdigest()])


def check_signature(h):
    """(None, access_key) if h's request is validly signed, else ((type, msg), key)."""
    auth = h.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return ("MissingAuthenticationTokenException", "Missing Authentication Token"), None
    try:
        fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        ak, day, region, service, term = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        sig = fields["Signature"]
    except (ValueError, KeyError):
        return ("IncompleteSignatureException", "Authorization header malformed"), None
    amz_date = h.headers.get("X-Amz-Date", "")
    if "host" not in signed or "x-amz-date" not in signed or not amz_date.startswith(day):
        return ("IncompleteSignatureException", "host and x-amz-date must be signed"), ak
    if region != ARGS.region or service != "ecs" or term != "aws4_request":
        return ("InvalidSignatureException", "Credential should be scoped to a valid region "
                "and service 'ecs'"), ak
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return ("IncompleteSignatureException", "X-Amz-Date malformed"), ak
    if abs(time.time() - when) > 300:
        return ("InvalidSignatureException", "Signature expired"), ak
    with LOCK:
        issued = ISSUED.get(ak)
    if ak == ARGS.env_ak:
        secret = ARGS.env_secret
    elif issued:
        secret, token, expiry = issued
        if time.time() >= expiry:
            return ("ExpiredTokenException", "The security token included in the request is "
                    "expired"), ak
        if h.headers.get("X-Amz-Security-Token") != token or "x-amz-security-token" not in signed:
            return ("UnrecognizedClientException", "The security token included in the "
                    "request is invalid."), ak
    else:
        return ("UnrecognizedClientException", "The security token included in the request "
                "is invalid."), ak
    creq = canonical_request(h.command, h.path, h.headers, signed, h.body)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, "/".join([day, region, service, term]),
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), day), region), service), term)
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return ("InvalidSignatureException", "The request signature we calculated does not "
                "match the signature you provided. Check your AWS Secret Access Key and "
                "signing method. Consult the service documentation for details."), ak
    return None, ak


# ---- the task set ----------------------------------------------------------------

def task_arn(i):
    return "arn:aws:ecs:%s:123456789012:task/%s/%032x" % (ARGS.region, ARGS.cluster, i + 1)


def task_ip(i):
    return ARGS.nodes[i] if i < len(ARGS.nodes) else "127.0.1.%d" % (i - len(ARGS.nodes) + 1)


def task(i):
    ip = task_ip(i)
    zone = ARGS.zones[i % len(ARGS.zones)]
    eni = "eni-%017x" % (i + 1)
    return {
        "taskArn": task_arn(i),
        "clusterArn": "arn:aws:ecs:%s:123456789012:cluster/%s" % (ARGS.region, ARGS.cluster),
        "taskDefinitionArn": "arn:aws:ecs:%s:123456789012:task-definition/oneblog:7" % ARGS.region,
        "group": "service:" + ARGS.service,
        "launchType": "FARGATE",
        "lastStatus": "RUNNING",
        "desiredStatus": "RUNNING",
        "availabilityZone": zone,
        "attachments": [{
            "id": "%08x-0000-4000-8000-%012x" % (i + 1, i + 1),
            "type": "ElasticNetworkInterface",
            "status": "ATTACHED",
            "details": [
                {"name": "subnetId", "value": "subnet-0abc%s" % zone[-1]},
                {"name": "networkInterfaceId", "value": eni},
                {"name": "macAddress", "value": "0a:00:00:00:%02x:%02x" % (i >> 8, i & 255)},
                {"name": "privateDnsName", "value": "ip-%s.ec2.internal" % ip.replace(".", "-")},
                {"name": "privateIPv4Address", "value": ip},
            ],
        }],
        "containers": [{
            "name": "oneblog",
            "lastStatus": "RUNNING",
            "networkInterfaces": [{"attachmentId": "%08x" % (i + 1), "privateIpv4Address": ip}],
        }],
    }


def list_tasks(req):
    if req.get("cluster") not in (ARGS.cluster, None):
        return 400, {"__type": "ClusterNotFoundException", "message": "Cluster not found."}
    if req.get("serviceName") != ARGS.service:
        return 400, {"__type": "ServiceNotFoundException", "message": "Service not found."}
    limit = req.get("maxResults", 100)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        return 400, {"__type": "InvalidParameterException",
                     "message": "maxResults must be between 1 and 100."}
    start = 0
    if req.get("nextToken"):
        try:
            start = int(req["nextToken"].split(".")[1])
        except (IndexError, ValueError):
            return 400, {"__type": "InvalidParameterException", "message": "Invalid nextToken."}
    arns = [task_arn(i) for i in range(start, min(start + limit, ARGS.tasks))]
    out = {"taskArns": arns}
    if start + limit < ARGS.tasks:
        out["nextToken"] = "tok.%d.%s" % (start + limit, secrets.token_hex(8))
    log("ListTasks page=%d start=%d returned=%d next=%s" % (start // limit + 1, start, len(arns),
                                                           "yes" if "nextToken" in out else "no"))
    return 200, out


def describe_tasks(req):
    arns = req.get("tasks") or []
    if len(arns) > 100:
        log("DescribeTasks REJECTED %d ARNs (more than 100)" % len(arns))
        return 400, {"__type": "InvalidParameterException",
                     "message": "Tasks cannot be more than 100."}
    index = {task_arn(i): i for i in range(ARGS.tasks)}
    tasks, failures = [], []
    for a in arns:
        if a in index:
            tasks.append(task(index[a]))
            with LOCK:
                DESCRIBED.add(a)
        else:
            failures.append({"arn": a, "reason": "MISSING"})
    with LOCK:
        total = len(DESCRIBED)
    log("DescribeTasks n=%d described-total=%d" % (len(arns), total))
    return 200, {"tasks": tasks, "failures": failures}


# ---- HTTP --------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, doc, ctype="application/x-amz-json-1.1"):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", secrets.token_hex(16))
        if status >= 400 and "__type" in doc:
            self.send_header("x-amzn-ErrorType", doc["__type"])
        self.end_headers()
        self.wfile.write(body)

    def issue_creds(self, how):
        with LOCK:
            ISSUED_N[0] += 1
            ak = "ASIAFAKE%08d" % ISSUED_N[0]
            secret, token = secrets.token_urlsafe(30), secrets.token_urlsafe(60)
            expiry = time.time() + ARGS.creds_ttl
            ISSUED[ak] = (secret, token, expiry)
        log("creds issued %s via %s" % (ak, how))
        self.reply(200, {
            "RoleArn": "arn:aws:iam::123456789012:role/oneblog-task",
            "AccessKeyId": ak, "SecretAccessKey": secret, "Token": token,
            "Expiration": datetime.datetime.fromtimestamp(expiry, datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
        }, "application/json")

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path.startswith("/v2/credentials/"):
            return self.issue_creds("relative-uri")
        if url.path == "/full/credentials":
            if self.headers.get("Authorization") != ARGS.full_token:
                log("creds REFUSED full-uri: bad Authorization")
                return self.reply(401, {"message": "unauthorized"}, "application/json")
            return self.issue_creds("full-uri")
        if url.path == "/ctl/fail":
            q = urllib.parse.parse_qs(url.query)
            with LOCK:
                FAIL["n"] = int(q.get("n", ["1"])[0])
                FAIL["type"] = q.get("type", ["ThrottlingException"])[0]
            log("ctl: the next %d ECS calls fail with %s" % (FAIL["n"], FAIL["type"]))
            return self.reply(200, {}, "application/json")
        self.reply(404, {"message": "not found"}, "application/json")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.body = self.rfile.read(n)
        target = self.headers.get("X-Amz-Target", "")
        if self.path.split("?")[0] != "/" or not target.startswith(TARGET):
            return self.reply(400, {"__type": "UnknownOperationException", "message": target})
        if self.headers.get("Content-Type") != "application/x-amz-json-1.1":
            return self.reply(400, {"__type": "SerializationException",
                                    "message": "bad content type"})
        err, ak = check_signature(self)
        if err:
            log("REJECTED %s from %s: %s" % (err[0], ak, err[1]))
            return self.reply(400, {"__type": err[0], "message": err[1]})
        with LOCK:
            fail = FAIL["n"] > 0
            if fail:
                FAIL["n"] -= 1
        if fail:
            log("FAILED (injected) %s" % FAIL["type"])
            return self.reply(400, {"__type": FAIL["type"], "message": "Rate exceeded"})
        try:
            req = json.loads(self.body or b"{}")
        except ValueError:
            return self.reply(400, {"__type": "SerializationException", "message": "bad JSON"})
        op = target[len(TARGET):]
        log("%s signed by %s" % (op, ak))
        if op == "ListTasks":
            return self.reply(*list_tasks(req))
        if op == "DescribeTasks":
            return self.reply(*describe_tasks(req))
        self.reply(400, {"__type": "UnknownOperationException", "message": op})


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--tasks", type=int, default=250)
    p.add_argument("--nodes", default="")
    p.add_argument("--zones", default="us-east-1a,us-east-1b,us-east-1c")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--cluster", default="oneblog")
    p.add_argument("--service", default="oneblog-web")
    p.add_argument("--env-key", default="AKIDENVEXAMPLE:envsecret")
    p.add_argument("--full-token", default="fake-full-uri-token")
    p.add_argument("--creds-ttl", type=int, default=3600)
    ARGS = p.parse_args()
    ARGS.nodes = [n for n in ARGS.nodes.split(",") if n]
    ARGS.zones = ARGS.zones.split(",")
    ARGS.env_ak, ARGS.env_secret = ARGS.env_key.split(":", 1)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    log("listening on 127.0.0.1:%d, %d tasks" % (srv.server_address[1], ARGS.tasks))
    srv.serve_forever()


if __name__ == "__main__":
    main()
