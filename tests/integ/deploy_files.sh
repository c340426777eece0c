#!/usr/bin/env bash
# tests/integ/deploy_files.sh BUILD - the deployment files, checked with what
# runs on a machine without a container engine (docs/operations.md says what is
# and is not verified): compose YAML parses and is structurally sound (or
# `docker compose config` when the plugin exists); ECS task and service JSON
# parse and carry Fargate's required fields, awsvpc, secrets from Secrets
# Manager, a health check and a non-root user; every Dockerfile is multi-stage,
# ends on debian:bookworm-slim as a non-root USER with a HEALTHCHECK and only
# COPYs paths that exist; the entrypoint is valid sh and moves a cookie to a
# 0400 file; systemd units pass `systemd-analyze verify` (binary paths aside);
# `make release` layout: scripts/release.sh packs a tarball with checksums.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
passed=0 failed=0
T=$(mktemp -d /tmp/deploy-files.XXXXXX); trap 'rm -rf "$T"' EXIT
check() { local n=$1; shift; if "$@" >"$T/last" 2>&1; then echo "ok   $n"; passed=$((passed+1)); else echo "FAIL $n"; sed 's/^/    /' "$T/last" | head -20; failed=$((failed+1)); fi; }

check "compose.yaml: services, images, secrets, health checks" python3 - <<'PY'
import yaml, sys
d = yaml.safe_load(open("deploy/compose.yaml"))
s = d["services"]
need = {"postgres", "mongo", "otel-collector", "cms1", "cms2", "client1", "client2"}
assert need <= set(s), need - set(s)
for n in ("cms1", "cms2", "client1", "client2", "recs"):
    svc = s[n]
    assert "cookie" in [x if isinstance(x, str) else x["source"] for x in svc["secrets"]], n
    assert svc["environment"]["ONEBLOG_COOKIE_FILE"] == "/run/secrets/cookie", n
    assert "ONEBLOG_COOKIE" not in svc["environment"], n
for n in ("postgres", "mongo"):
    assert "healthcheck" in s[n], n
assert "cookie" in d["secrets"]
PY
if docker compose version >/dev/null 2>&1; then
    check "docker compose config" env PG_PASSWORD=x docker compose -f deploy/compose.yaml config -q
fi
check "otel-collector.yaml parses, OTLP/HTTP receiver" python3 -c "
import yaml; d = yaml.safe_load(open('deploy/otel-collector.yaml'))
assert d['receivers']['otlp']['protocols']['http']['endpoint'].endswith(':4318')
assert d['service']['pipelines']['traces']['receivers'] == ['otlp']"
check "ECS task definitions: Fargate, awsvpc, secrets, non-root, health check" python3 - <<'PY'
import json, glob
files = sorted(glob.glob("deploy/ecs/task-*.json"))
assert len(files) >= 2, files
for f in files:
    t = json.load(open(f))
    assert t["networkMode"] == "awsvpc" and t["requiresCompatibilities"] == ["FARGATE"], f
    assert t["cpu"] and t["memory"] and t["executionRoleArn"] and t["taskRoleArn"], f
    for c in t["containerDefinitions"]:
        names = [e["name"] for e in c["environment"]]
        assert "ONEBLOG_COOKIE" not in names, f
        sec = {s["name"]: s["valueFrom"] for s in c["secrets"]}
        assert sec["ONEBLOG_COOKIE"].startswith("arn:aws:secretsmanager:"), f
        assert c["user"].split(":")[0] not in ("0", "root"), f
        assert c["healthCheck"]["command"][0] in ("CMD", "CMD-SHELL"), f
        assert dict((e["name"], e["value"]) for e in c["environment"])["ONEBLOG_CLUSTER_STRATEGY"] == "ecs"
        assert c["stopTimeout"] >= 2, f
PY
check "ECS service definitions: Fargate, awsvpc, rolling with circuit breaker" python3 - <<'PY'
import json, glob
for f in sorted(glob.glob("deploy/ecs/service-*.json")):
    s = json.load(open(f))
    assert s["launchType"] == "FARGATE", f
    assert s["networkConfiguration"]["awsvpcConfiguration"]["subnets"], f
    assert s["deploymentConfiguration"]["minimumHealthyPercent"] == 100, f
    assert s["taskDefinition"] in ("oneblog-cms", "oneblog-client"), f
PY
if [ -f deploy/ecs/discovery-policy.json ]; then
    check "the ECS discovery IAM policy is valid JSON (deploy/ecs/discovery-policy.json)" \
        python3 -c "import json; json.load(open('deploy/ecs/discovery-policy.json'))"
fi
check "Dockerfiles: multi-stage, bookworm-slim, non-root, HEALTHCHECK, COPY sources exist" python3 - <<'PY'
import glob, os, re
files = sorted(glob.glob("deploy/docker/Dockerfile.*"))
assert {os.path.basename(f) for f in files} >= {"Dockerfile.cms", "Dockerfile.client", "Dockerfile.recs"}
for f in files:
    lines = [l.strip() for l in open(f) if l.strip() and not l.lstrip().startswith("#")]
    froms = [l for l in lines if l.startswith("FROM ")]
    assert len(froms) >= 2, f + ": not multi-stage"
    assert froms[-1].split()[1] == "debian:bookworm-slim", f
    last = lines.index(froms[-1])
    users = [l for l in lines[last:] if l.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("0", "root"), f
    assert any(l.startswith("HEALTHCHECK ") for l in lines[last:]), f
    assert any(l.startswith("ENTRYPOINT ") for l in lines[last:]), f
    for l in lines:
        m = re.match(r"COPY --from=build /src/(\S+)", l)
        if m and not m.group(1).startswith("build/"):
            assert os.path.exists(m.group(1)), f + ": " + m.group(1)
PY
check "entrypoint: valid sh, moves the cookie to a 0400 file and out of the environment" sh -c '
    sh -n deploy/docker/entrypoint.sh &&
    out=$(ONEBLOG_COOKIE=a,b ONEBLOG_COOKIE_FILE='"$T"'/ck sh deploy/docker/entrypoint.sh sh -c "echo \${ONEBLOG_COOKIE:-unset} \$ONEBLOG_COOKIE_FILE") &&
    [ "$out" = "unset '"$T"'/ck" ] && [ "$(stat -c %a '"$T"'/ck)" = 400 ] && [ "$(cat '"$T"'/ck)" = "$(printf "a\nb")" ]'
if command -v systemd-analyze >/dev/null; then
    for u in deploy/systemd/*.service; do
        check "systemd-analyze verify $(basename "$u")" sh -c \
            "systemd-analyze verify '$u' 2>&1 | grep -v 'is not executable: No such file' | grep . && exit 1 || exit 0"
    done
else
    check "systemd-analyze is needed (make deps)" false
fi
if [ -x "$B/bin/oneblog-cms" ] && [ -x "$B/bin/oneblog-ctl" ]; then
    check "release tarball: binaries, migrations, theme, docs, units, checksums" sh -c "
        bash scripts/release.sh '$B' 0.0.0-test '$T/rel' >/dev/null &&
        tar -xzf '$T'/rel/oneblog-0.0.0-test-linux-*.tar.gz -C '$T' &&
        cd '$T'/oneblog-0.0.0-test-linux-* && sha256sum -c --quiet SHA256SUMS &&
        for f in bin/oneblog-cms bin/oneblog-client bin/oneblog-recs bin/oneblog-ctl \
            share/oneblog/migrations/store_sqlite_sql.h share/oneblog/themes/default \
            share/doc/oneblog/docs/operations.md lib/systemd/system/oneblog-cms.service; do
            [ -e \$f ] || { echo missing \$f; exit 1; }; done"
fi
echo "$(basename "$0"): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
