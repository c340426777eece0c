#!/usr/bin/env bash
# scripts/release.sh BUILD VERSION OUTDIR - stage and pack a release:
#   OUTDIR/oneblog-VERSION-linux-ARCH.tar.gz with
#     bin/        oneblog-cms, oneblog-client, oneblog-recs, oneblog-events, oneblog-ctl
#     share/oneblog/migrations/  the schema migrations (SQLite and PostgreSQL; the
#                 binaries apply them themselves, these copies are for review/DBAs)
#     share/oneblog/themes/, demo/, admin/ (admin_views, admin_assets)
#     share/doc/oneblog/         README.md, docs/
#     lib/systemd/system/        the units of deploy/systemd/
#     lib/oneblog/modules/       recs-1.so, recs-2.so: the `recs` server as hot-upgradable
#                 modules (docs/hot-upgrade.md; the binaries link the newest version)
#     VERSION, SHA256SUMS (of every file)
# `make install PREFIX=...` installs the same tree (scripts/release.sh --install).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --install ]; then MODE=install; shift; else MODE=pack; fi
B=$1 VERSION=$2 OUT=$3
ARCH=$(uname -m)
NAME=oneblog-$VERSION-linux-$ARCH
if [ "$MODE" = pack ]; then STAGE=$(mktemp -d)/$NAME; trap 'rm -rf "$(dirname "$STAGE")"' EXIT; else STAGE=$OUT; fi
install -d "$STAGE/bin" "$STAGE/share/oneblog/migrations" "$STAGE/share/oneblog/admin" \
    "$STAGE/share/doc/oneblog" "$STAGE/lib/systemd/system"
for b in oneblog-cms oneblog-client oneblog-recs oneblog-events oneblog-ctl; do
    install -m 0755 "$B/bin/$b" "$STAGE/bin/$b"
    [ "$MODE" = pack ] && strip --strip-unneeded "$STAGE/bin/$b" 2>/dev/null || true
done
if ls "$B"/lib/modules/recs-[0-9]*.so >/dev/null 2>&1; then
    install -d "$STAGE/lib/oneblog/modules"
    install -m 0644 "$B"/lib/modules/recs-[0-9]*.so "$STAGE/lib/oneblog/modules/"
fi
cp -r cms/store_sqlite_sql.h cms/store_pg_sql.h "$STAGE/share/oneblog/migrations/"
cp -r themes "$STAGE/share/oneblog/themes"
cp -r cms/demo "$STAGE/share/oneblog/demo"
cp -r cms/admin_views cms/admin_assets "$STAGE/share/oneblog/admin/"
cp -r README.md docs "$STAGE/share/doc/oneblog/"
for u in deploy/systemd/*.service; do
    sed "s|/opt/oneblog|${PREFIX_PATHS:-/opt/oneblog}|g" "$u" >"$STAGE/lib/systemd/system/$(basename "$u")"
done
echo "$VERSION" >"$STAGE/VERSION"
(cd "$STAGE" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)
if [ "$MODE" = pack ]; then
    mkdir -p "$OUT"
    tar -C "$(dirname "$STAGE")" --owner=0 --group=0 --numeric-owner -czf "$OUT/$NAME.tar.gz" "$NAME"
    echo "$OUT/$NAME.tar.gz"
else
    echo "installed into $STAGE"
fi
