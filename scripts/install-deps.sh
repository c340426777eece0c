#!/usr/bin/env bash
# Install the Debian 12 packages needed to build and test OneBlog.
#
# Idempotent: asks dpkg which packages are missing and installs only those;
# `apt-get update` runs only when something is missing, so a machine that
# already has everything returns in well under a second. Works as root or
# through sudo, with no terminal and no stdin (CI).
#
# Never install nodejs or npm here: the services do not use them.
set -euo pipefail

# Packages, one reason each:
#   build-essential       gcc, make, libc headers
#   pkg-config            locating optional libraries (libpq, TLS) at build time
#   erlang-base           erl/epmd for interop tests against real Erlang/OTP
#   erlang-dev            ei.h and libei.a (external term format, distribution)
#   elixir                Elixir client tests of the RPC contract
#   libboost-context-dev  libboost_context.a: fcontext asm for process stacks
#   clang                 second compiler; sanitizer and fuzz builds
#   libclang-rt-14-dev    clang's sanitizer/fuzzer runtimes
#   curl                  HTTP checks in integration tests
#   iproute2              `ip netns` for multi-host cluster tests
#   libssl-dev            libcrypto: MD5 of the Erlang distribution handshake;
#                         libssl: the distribution's optional TLS
#   libjansson-dev        JSON (Mustache spec tests, imports, the admin API)
#   libhttp-parser-dev    nodejs's http_parser: the HTTP server's request parser
#   zlib1g-dev            gzip responses of the HTTP server
#   nginx, wrk            `make bench-http`: the reference server and the load tool
PACKAGES="build-essential pkg-config erlang-base erlang-dev elixir libboost-context-dev clang libclang-rt-14-dev curl iproute2 libjansson-dev libssl-dev libhttp-parser-dev zlib1g-dev nginx wrk"
# The event log (events/): BSON, the MongoDB driver, libpq, a PostgreSQL server
# for its contract tests, libdeflate (record CRCs: zlib's CRC-32 with PCLMULQDQ),
# zlib (the tests' independent CRCs), libcrypto (the hash chain).
PACKAGES="$PACKAGES libbson-dev libmongoc-dev libpq-dev postgresql-15 libdeflate-dev zlib1g-dev libssl-dev"

# The CMS (cms/): SQLite, libpq and a PostgreSQL server for the store tests, md4c
# (Markdown), libyaml (front matter), jansson (Ghost import, export), argon2.
PACKAGES="$PACKAGES libsqlite3-dev libpq-dev postgresql-15 libmd4c-dev libmd4c-html0-dev libyaml-dev libjansson-dev libargon2-dev"

# The client (client/): xmllint checks that feeds and sitemaps are well-formed;
# Chromium drives the end-to-end tests and takes the README's screenshots.
PACKAGES="$PACKAGES libxml2-utils chromium"

# The cluster module (cnode/src/cluster*.c, discovery_*.c): c-ares (DNS
# discovery), libcurl (ECS discovery), jansson (ECS replies); its tests run
# dnsmasq (DNS), dig (checks) and ip netns (iproute2, above).
PACKAGES="$PACKAGES libc-ares-dev libcurl4-openssl-dev libjansson-dev dnsmasq-base bind9-dnsutils"

# TLS distribution (cnode/src/dist_tls.c, libssl from libssl-dev above): the
# openssl CLI makes the test CA and certificates; erlang-ssl is erl's
# -proto_dist inet_tls (with erlang-public-key and erlang-crypto) for interop.
PACKAGES="$PACKAGES openssl erlang-ssl erlang-public-key erlang-crypto"

# Observability (docs/observability.md): a real Prometheus (Debian's 2.42, with
# promtool) scrapes both services in tests/integ/prometheus.sh.
PACKAGES="$PACKAGES prometheus"

missing=()
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all dependencies present"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: missing ${missing[*]}, and not root and no sudo" >&2
        exit 1
    fi
    # -n: never prompt; without stdin a prompt would hang CI.
    SUDO=(sudo -n)
fi

APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
     -o DPkg::Lock::Timeout=600)

"${APT[@]}" update >/dev/null </dev/null
"${APT[@]}" install --no-install-recommends "${missing[@]}" >/dev/null </dev/null
echo "install-deps: installed ${missing[*]}"
