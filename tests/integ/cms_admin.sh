#!/usr/bin/env bash
# tests/integ/cms_admin.sh BUILD - the admin web UI and the JSON Admin API of
# `oneblog-cms serve`, with curl, on SQLite in a temp dir (distribution off, admin
# on a kernel-picked loopback port): sign-in with argon2id hashes, session cookie
# attributes, CSRF refusals, the editor (save, preview, publish, schedule,
# unpublish, revisions and restore), roles enforced on the server (a contributor
# cannot publish, an author cannot edit another's post, staff and settings are for
# administrators), tags, staff, settings, API keys (`oneblog-cms api-key add`) and
# the API's error bodies, bad input (oversized bodies, invalid UTF-8, duplicate
# slugs, SQL metacharacters, script tags in titles) that loses nothing, and login
# rate limiting per account and per address. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-${ONEBLOG_BUILD:-build}}
CMS="$B/bin/oneblog-cms"
T=$(mktemp -d /tmp/cms-admin.XXXXXX)
SERVE_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null
    [ -n "$SERVE_PID" ] && wait "$SERVE_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
export ONEBLOG_DATA_DIR="$T/data" ONEBLOG_LOG_LEVEL=warn ONEBLOG_DIST=0 ONEBLOG_DEMO=0
export ONEBLOG_ADMIN_PORT=0 ONEBLOG_ADMIN_DIR=cms
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
# expect NAME WANT GOT
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (want '$2', got '$3')"; fi; }
# contains NAME FILE PATTERN (grep -E)
contains() { if grep -qE -- "$3" "$2"; then ok "$1"; else bad "$1 (no /$3/ in $2)"; head -c 600 "$2" | sed 's/^/    /'; echo; fi; }
lacks() { if grep -qE -- "$3" "$2"; then bad "$1 (/$3/ found in $2)"; else ok "$1"; fi; }
db() { python3 -c "import sqlite3,sys; r=sqlite3.connect('$T/data/oneblog.db').execute(sys.argv[1]).fetchall(); print('\n'.join('|'.join('' if c is None else str(c) for c in row) for row in r))" "$1"; }

if [ ! -x "$CMS" ]; then echo "no $CMS: build first"; echo "cms_admin.sh: 0 passed, 1 failed"; exit 1; fi

# ---- users: one per role, passwords hashed with argon2id by the CLI ---------------
PW='correct horse battery'
echo "$PW" | "$CMS" init --email owner@example.com --name 'Olivia Owner' --password-stdin >/dev/null
for r in administrator editor author contributor; do
    echo "$PW" | "$CMS" user add --email "$r@example.com" --name "${r^} One" --role "$r" --password-stdin >/dev/null
done
echo "$PW" | "$CMS" user add --email author2@example.com --name 'Author Two' --role author --password-stdin >/dev/null
expect "six staff users with argon2id hashes" 6 "$(db "select count(*) from users where password_hash like '\$argon2id\$v=19\$m=65536,t=2,p=1\$%'")"

"$CMS" serve >"$T/serve.out" 2>"$T/serve.err" &
SERVE_PID=$!
for _ in $(seq 300); do grep -q "admin on" "$T/serve.out" && break; sleep 0.1; done
PORT=$(sed -n 's|.*admin on http://127.0.0.1:\([0-9]*\)/admin/.*|\1|p' "$T/serve.out")
if [ -z "$PORT" ]; then
    bad "serve starts the admin"; cat "$T/serve.out" "$T/serve.err" | sed 's/^/    /'
    echo "cms_admin.sh: $passed passed, $failed failed"; exit 1
fi
ok "serve starts the admin on 127.0.0.1:$PORT"
U="http://127.0.0.1:$PORT"

# ---- helpers ----------------------------------------------------------------------
# req JAR METHOD PATH [curl args...]: status code; headers in $T/h, body in $T/b
req() {
    local jar=$1 m=$2 p=$3; shift 3
    curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' -b "$T/$jar" -c "$T/$jar" -X "$m" "$@" "$U$p"
}
csrf_of() { sed -n 's/.*name="_csrf" value="\([0-9a-f]*\)".*/\1/p' "$T/b" | head -1; }
location() { sed -n 's/^[Ll]ocation: \([^\r]*\).*/\1/p' "$T/h" | tr -d '\r'; }
# login JAR EMAIL PASSWORD: status of the POST
login() {
    : >"$T/$1"
    req "$1" GET /admin/login >/dev/null
    local t; t=$(csrf_of)
    req "$1" POST /admin/login --data-urlencode "_csrf=$t" --data-urlencode "email=$2" --data-urlencode "password=$3"
}
# token JAR: the session's CSRF token (from a page with forms)
token() { req "$1" GET /admin/posts/new >/dev/null; csrf_of; }
# save JAR PATH CSRF ACTION TITLE MARKDOWN [extra curl args]
save() {
    local jar=$1 p=$2 t=$3 a=$4 title=$5 md=$6; shift 6
    req "$jar" POST "$p" --data-urlencode "_csrf=$t" --data-urlencode "action=$a" \
        --data-urlencode "title=$title" --data-urlencode "markdown=$md" "$@"
}
post_id() { location | sed -n 's|^/admin/posts/\([0-9]*\).*|\1|p'; }

# ---- sign-in and sessions -----------------------------------------------------------
expect "the admin needs a session (303 to the login)" 303 "$(req anon GET /admin/posts)"
expect "... to /admin/login" /admin/login "$(location)"
expect "the login page" 200 "$(req anon GET /admin/login)"
contains "security headers: CSP without inline scripts" "$T/h" "Content-Security-Policy: default-src 'self'; script-src 'self'"
contains "security headers: no framing" "$T/h" "X-Frame-Options: DENY"
contains "login CSRF cookie is HttpOnly and SameSite=Strict" "$T/h" "Set-Cookie: ob_login=[0-9a-f]{64}.*HttpOnly"
expect "a wrong password is refused (401)" 401 "$(login owner author@example.com 'wrong password!')"
contains "... with a clear message" "$T/b" "Wrong email or password"
lacks "... and no session cookie" "$T/h" "ob_session="
expect "an unknown email is refused the same way" 401 "$(login owner nobody@example.com "$PW")"
: >"$T/owner"; req owner GET /admin/login >/dev/null
expect "login without the form's token is refused (403)" 403 "$(req owner POST /admin/login --data-urlencode email=owner@example.com --data-urlencode "password=$PW")"
expect "the owner signs in (303)" 303 "$(login owner owner@example.com "$PW")"
expect "... to the posts" /admin/posts "$(location)"
contains "session cookie: 256-bit id, HttpOnly, SameSite=Strict, Path=/admin" "$T/h" "Set-Cookie: ob_session=[0-9a-f]{64}; Path=/admin; (.*; )?(HttpOnly.*SameSite=Strict|SameSite=Strict.*HttpOnly)"
lacks "no Secure flag without TLS configured" "$T/h" "ob_session=.*Secure"
grep -q "$PW" "$T/serve.err" "$T/serve.out" && bad "the password appears in the logs" || ok "passwords are not logged"
SID=$(awk '$6 == "ob_session" {print $7}' "$T/owner")
grep -q "$SID" "$T/serve.err" "$T/serve.out" && bad "the session id appears in the logs" || ok "session ids are not logged"
expect "the post list" 200 "$(req owner GET /admin/posts)"
contains "... names who is signed in" "$T/b" "Olivia Owner"
OT=$(token owner)
expect "a 64-hex CSRF token in forms" 64 "${#OT}"

# ---- CSRF ---------------------------------------------------------------------------
n0=$(db "select count(*) from posts")
expect "a POST without the CSRF token is refused (403)" 403 "$(req owner POST /admin/posts --data-urlencode 'title=x' --data-urlencode 'action=save')"
expect "a POST with a wrong CSRF token is refused (403)" 403 "$(save owner /admin/posts "$(printf '%064d' 0)" save 'CSRF x' 'x')"
expect "a POST from another origin is refused (403)" 403 "$(save owner /admin/posts "$OT" save 'CSRF y' 'y' -H 'Origin: http://evil.example')"
expect "... and nothing was written" "$n0" "$(db "select count(*) from posts")"

# ---- the editor: save, preview, publish -----------------------------------------------
expect "the editor for a new post" 200 "$(req owner GET /admin/posts/new)"
contains "... loads editor.js" "$T/b" 'src="/admin/assets/editor.js"'
expect "editor.js is served" 200 "$(req owner GET /admin/assets/editor.js)"
expect "the owner saves a draft (303)" 303 "$(save owner /admin/posts "$OT" save 'Hello admin' '# Greetings

Some *text*.' --data-urlencode 'tags=News, Admin Tests' --data-urlencode 'meta_title=SEO title' --data-urlencode 'feature_image=https://example.com/a.jpg')"
P1=$(post_id)
expect "... stored as a draft with its fields" "0|hello-admin|SEO title|https://example.com/a.jpg" "$(db "select status, slug, meta_title, feature_image from posts where id = $P1")"
expect "... with its tags in order" "news,admin-tests" "$(db "select group_concat(t.slug) from posts_tags pt join tags t on t.id = pt.tag_id where pt.post_id = $P1 order by pt.sort_order")"
expect "... and the owner as its author" "olivia-owner" "$(db "select u.slug from posts_authors pa join users u on u.id = pa.user_id where pa.post_id = $P1")"
expect "the live preview endpoint renders Markdown (200)" 200 "$(req owner POST /admin/preview --data-urlencode "_csrf=$OT" --data-urlencode 'markdown=# Hi *there*')"
contains "... as HTML" "$T/b" "<h1>Hi <em>there</em></h1>"
expect "the Preview button works without JS (200)" 200 "$(save owner "/admin/posts/$P1" "$OT" preview 'Hello admin' 'Changed **but not saved**')"
contains "... shows the rendered preview" "$T/b" "Changed <strong>but not saved</strong>"
expect "... and saves nothing" "# Greetings" "$(db "select substr(markdown, 1, 11) from posts where id = $P1")"
expect "publish (303)" 303 "$(save owner "/admin/posts/$P1" "$OT" publish 'Hello admin' '# Greetings

Published now.' --data-urlencode 'tags=News')"
expect "... the post is published" "2" "$(db "select status from posts where id = $P1")"
expect "... content version bumped" 1 "$(db "select version > 0 from content_state")"
FUT=$(date -u -d '+2 days' +%Y-%m-%dT%H:%M)
expect "a draft to schedule" 303 "$(save owner /admin/posts "$OT" save 'Later post' 'Soon.')"
P2=$(post_id)
expect "schedule it two days ahead (303)" 303 "$(save owner "/admin/posts/$P2" "$OT" schedule 'Later post' 'Soon.' --data-urlencode "published_at=$FUT")"
expect "... scheduled" 1 "$(db "select status from posts where id = $P2")"
expect "scheduling in the past is refused (422)" 422 "$(save owner "/admin/posts/$P2" "$OT" schedule 'Later post' 'Soon.' --data-urlencode 'published_at=2001-01-01T00:00')"
expect "unpublish the first post (303)" 303 "$(save owner "/admin/posts/$P1" "$OT" unpublish 'Hello admin' '# Greetings

Published now.')"
expect "... back to draft" 0 "$(db "select status from posts where id = $P1")"
expect "republish" 303 "$(save owner "/admin/posts/$P1" "$OT" publish 'Hello admin' '# Greetings

Published now.')"
expect "the list filters by status" 200 "$(req owner GET '/admin/posts?status=scheduled')"
contains "... shows the scheduled post" "$T/b" "Later post"
lacks "... and not the published one" "$T/b" "Hello admin"

# ---- revisions --------------------------------------------------------------------------
expect "revisions page" 200 "$(req owner GET "/admin/posts/$P1/revisions")"
REV=$(db "select min(id) from revisions where post_id = $P1")
expect "restore the first revision (303)" 303 "$(req owner POST "/admin/posts/$P1/revisions/$REV/restore" --data-urlencode "_csrf=$OT")"
expect "... the first Markdown is back" "# Greetings

Some *text*." "$(db "select markdown from posts where id = $P1")"
expect "... recorded as a new revision" "restore revision $REV" "$(db "select reason from revisions where post_id = $P1 order by id desc limit 1")"

# ---- roles ----------------------------------------------------------------------------
expect "the contributor signs in" 303 "$(login contrib contributor@example.com "$PW")"
CT=$(token contrib)
expect "a contributor saves a draft" 303 "$(save contrib /admin/posts "$CT" save 'Contributed piece' 'Draft by a contributor. <b>raw</b>')"
PC=$(post_id)
expect "... its raw HTML is escaped" 1 "$(db "select html like '%&lt;b&gt;raw&lt;/b&gt;%' from posts where id = $PC")"
expect "a contributor cannot publish (403)" 403 "$(save contrib "/admin/posts/$PC" "$CT" publish 'Contributed piece' 'Trying to publish')"
expect "... the post stays a draft, unchanged" "0|Draft by a contributor. <b>raw</b>" "$(db "select status, markdown from posts where id = $PC")"
expect "a contributor cannot publish a new post either" 403 "$(save contrib /admin/posts "$CT" publish 'Sneaky' 'x')"
expect "... nothing saved" 0 "$(db "select count(*) from posts where title = 'Sneaky'")"
expect "a contributor cannot open the owner's post (403)" 403 "$(req contrib GET "/admin/posts/$P1")"
expect "a contributor sees only their own posts" 200 "$(req contrib GET /admin/posts)"
lacks "... not the owner's" "$T/b" "Hello admin"
expect "a contributor cannot delete the owner's post" 403 "$(req contrib POST "/admin/posts/$P1/delete" --data-urlencode "_csrf=$CT")"
expect "contributor: tags page refused" 403 "$(req contrib GET /admin/tags)"
expect "an editor signs in" 303 "$(login editor editor@example.com "$PW")"
ET=$(token editor)
expect "an editor publishes the contributor's draft" 303 "$(save editor "/admin/posts/$PC" "$ET" publish 'Contributed piece' 'Reviewed. <b>raw</b>')"
expect "... published, raw HTML kept by the editor's rule" "2|1" "$(db "select status, html like '%<b>raw</b>%' from posts where id = $PC")"
expect "... the contributor can no longer edit it" 403 "$(req contrib GET "/admin/posts/$PC")"
expect "an author signs in" 303 "$(login author author@example.com "$PW")"
AT=$(token author)
expect "an author writes and publishes their own post" 303 "$(save author /admin/posts "$AT" publish 'Author piece' 'Mine.')"
PA=$(post_id)
expect "... published" 2 "$(db "select status from posts where id = $PA")"
before=$(db "select markdown || updated_at from posts where id = $P1")
expect "an author cannot edit the owner's post (403)" 403 "$(save author "/admin/posts/$P1" "$AT" save 'Hijacked' 'Hijacked')"
expect "... unchanged" "$before" "$(db "select markdown || updated_at from posts where id = $P1")"
expect "an author cannot unpublish another's post" 403 "$(save author "/admin/posts/$PC" "$AT" unpublish 'x' 'x')"
expect "a second author cannot edit the first author's post" 303 "$(login author2 author2@example.com "$PW")"
A2T=$(token author2)
expect "... (403)" 403 "$(save author2 "/admin/posts/$PA" "$A2T" save 'Mine now' 'x')"
expect "an author cannot change the authors of a post" 303 "$(save author "/admin/posts/$PA" "$AT" save 'Author piece' 'Mine, edited.' --data-urlencode 'authors=olivia-owner')"
expect "... still theirs" "author-one" "$(db "select group_concat(u.slug) from posts_authors pa join users u on u.id = pa.user_id where pa.post_id = $PA")"
expect "author: staff page refused" 403 "$(req author GET /admin/staff)"
expect "editor: settings page refused" 403 "$(req editor GET /admin/settings)"
expect "editor: staff page refused" 403 "$(req editor GET /admin/staff)"

# ---- tags, staff, settings -----------------------------------------------------------------
expect "an editor adds a tag" 303 "$(req editor POST /admin/tags --data-urlencode "_csrf=$ET" --data-urlencode 'name=Release Notes' --data-urlencode 'description=What changed')"
expect "... stored" "release-notes|What changed" "$(db "select slug, description from tags where slug = 'release-notes'")"
expect "the staff page" 200 "$(req owner GET /admin/staff)"
expect "the owner adds an editor" 303 "$(req owner POST /admin/staff --data-urlencode "_csrf=$OT" --data-urlencode 'name=New Person' --data-urlencode 'email=new@example.com' --data-urlencode 'role=editor' --data-urlencode "password=$PW")"
expect "... who can sign in" 303 "$(login newp new@example.com "$PW")"
NID=$(db "select id from users where email = 'new@example.com'")
expect "the owner makes them an author" 303 "$(req owner POST "/admin/staff/$NID/role" --data-urlencode "_csrf=$OT" --data-urlencode 'role=author')"
expect "... role changed" 1 "$(db "select role from users where id = $NID")"
expect "... and it takes effect at once (tags now refused)" 403 "$(req newp GET /admin/tags)"
expect "an administrator signs in" 303 "$(login admin administrator@example.com "$PW")"
ADT=$(token admin)
OID=$(db "select id from users where email = 'owner@example.com'")
expect "an administrator cannot demote the owner" 403 "$(req admin POST "/admin/staff/$OID/role" --data-urlencode "_csrf=$ADT" --data-urlencode 'role=author')"
expect "nobody becomes owner through the admin" 403 "$(req admin POST "/admin/staff/$NID/role" --data-urlencode "_csrf=$ADT" --data-urlencode 'role=owner')"
expect "the settings page" 200 "$(req owner GET /admin/settings)"
expect "the owner changes the site title" 303 "$(req owner POST /admin/settings --data-urlencode "_csrf=$OT" --data-urlencode 'title=Admin Test Blog' --data-urlencode 'posts_per_page=7')"
expect "... stored" "Admin Test Blog|7" "$(db "select (select value from settings where key='title') || '|' || (select value from settings where key='posts_per_page')")"
expect "a bad setting is refused with a message (422)" 422 "$(req owner POST /admin/settings --data-urlencode "_csrf=$OT" --data-urlencode 'navigation=not json')"
contains "... naming the field" "$T/b" "navigation"

# ---- bad input through the forms --------------------------------------------------------------
n0=$(db "select count(*) from posts")
expect "a duplicate slug is refused (409)" 409 "$(save owner /admin/posts "$OT" save 'Another hello' 'x' --data-urlencode 'slug=hello-admin')"
contains "... with a clear message" "$T/b" "already used"
contains "... and the form keeps what was typed" "$T/b" "Another hello"
expect "a title with invalid UTF-8 is refused (422)" 422 "$(req owner POST /admin/posts --data-urlencode "_csrf=$OT" --data-urlencode action=save --data 'title=%C3%28bad' --data-urlencode 'markdown=x')"
contains "... naming the field" "$T/b" "title: not valid UTF-8"
expect "... and nothing was written" "$n0" "$(db "select count(*) from posts")"
head -c 2200000 /dev/zero | tr '\0' 'a' >"$T/big.md"
expect "Markdown over 2 MiB is refused (413)" 413 "$(req owner POST /admin/posts --data-urlencode "_csrf=$OT" --data-urlencode action=save --data-urlencode 'title=Big' --data-urlencode "markdown@$T/big.md")"
head -c 9000000 /dev/zero | tr '\0' 'a' >"$T/huge"
expect "a body over 8 MiB is refused (413)" 413 "$(req owner POST /admin/posts -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$T/huge")"
expect "SQL metacharacters are just text" 303 "$(save owner /admin/posts "$OT" save "Robert'); DROP TABLE posts;--" "1' OR '1'='1")"
PS=$(post_id)
expect "... stored as typed" "Robert'); DROP TABLE posts;--|1' OR '1'='1" "$(db "select title, markdown from posts where id = $PS")"
expect "a script tag in a title is stored as text" 303 "$(save owner /admin/posts "$OT" save '<script>alert(1)</script> Title' 'x')"
req owner GET /admin/posts >/dev/null
contains "... and escaped in the admin" "$T/b" "&lt;script&gt;alert\(1\)&lt;/script&gt; Title"
lacks "... never raw" "$T/b" "<script>alert"
expect "a slug with quotes is refused (422)" 422 "$(save owner /admin/posts "$OT" save 'Quote slug' 'x' --data-urlencode "slug=a'b")"
expect "the posts table is intact and nothing was lost" "$((n0 + 2))" "$(db "select count(*) from posts")"

# ---- the JSON Admin API --------------------------------------------------------------------------
KEY=$("$CMS" api-key add --email owner@example.com --name tests 2>/dev/null)
CKEY=$("$CMS" api-key add --email contributor@example.com --name c 2>/dev/null)
case "$KEY" in [0-9]*.*) ok "api-key add prints ID.SECRET" ;; *) bad "api-key add printed '$KEY'" ;; esac
expect "the key is stored hashed, not in clear" "0|1" "$(db "select count(*) from api_keys where secret_hash like '%${KEY#*.}%'")|$(db "select count(*) from api_keys where name = 'tests' and secret_hash like 'sha256\$%'")"
api() { # api KEY METHOD PATH [curl args]
    local k=$1 m=$2 p=$3; shift 3
    curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $k" "$@" "$U/admin/api/v1$p"
}
jq_() { python3 -c "import json,sys; d=json.load(open('$T/b')); print(eval(sys.argv[1]))" "$1" 2>/dev/null; }
expect "no key: 401" 401 "$(curl -s -o "$T/b" -w '%{http_code}' "$U/admin/api/v1/posts")"
expect "... with a JSON error body" "unauthorized" "$(jq_ "d['error']['code']")"
expect "a wrong key: 401" 401 "$(api "${KEY%%.*}.$(printf '%064d' 7)" GET /posts)"
expect "a session cookie does not open the API" 401 "$(curl -s -o "$T/b" -w '%{http_code}' -b "$T/owner" "$U/admin/api/v1/posts")"
expect "GET /me" 200 "$(api "$KEY" GET /me)"
expect "... is the owner" owner "$(jq_ "d['user']['role']")"
expect "list posts" 200 "$(api "$KEY" GET '/posts?status=published')"
expect "... published ones" 1 "$(jq_ "int(all(p['status']=='published' for p in d['posts']) and d['meta']['total']>=3)")"
expect "create a post (201)" 201 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' -d '{"title":"From the API","markdown":"Hello **API**","tags":["api"],"meta_description":"d"}')"
AP=$(jq_ "d['post']['id']")
expect "... rendered, tagged, a draft" "draft|<p>Hello <strong>API</strong></p>|api" "$(jq_ "d['post']['status']+'|'+d['post']['html'].strip()+'|'+d['post']['tags'][0]['slug']")"
expect "update it (fields given replace, others stay)" 200 "$(api "$KEY" PUT "/posts/$AP" -H 'Content-Type: application/json' -d '{"title":"From the API, edited"}')"
expect "... markdown kept" "From the API, edited|Hello **API**" "$(jq_ "d['post']['title']+'|'+d['post']['markdown']")"
expect "publish through the API" 200 "$(api "$KEY" POST "/posts/$AP/publish")"
expect "... published" published "$(jq_ "d['post']['status']")"
expect "schedule through the API" 200 "$(api "$KEY" POST "/posts/$AP/schedule" -H 'Content-Type: application/json' -d "{\"published_at\":\"$(date -u -d '+3 days' +%Y-%m-%dT%H:%M:%SZ)\"}")"
expect "... scheduled" scheduled "$(jq_ "d['post']['status']")"
expect "unpublish through the API" 200 "$(api "$KEY" POST "/posts/$AP/unpublish")"
expect "... draft" draft "$(jq_ "d['post']['status']")"
expect "revisions through the API" 200 "$(api "$KEY" GET "/posts/$AP/revisions")"
AREV=$(jq_ "d['revisions'][-1]['id']")
expect "restore through the API" 200 "$(api "$KEY" POST "/posts/$AP/revisions/$AREV/restore")"
expect "... the first title is back" "From the API" "$(jq_ "d['post']['title']")"
expect "a duplicate slug: 409" 409 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' -d '{"title":"x","slug":"hello-admin"}')"
expect "... error body with code and message" "conflict|1" "$(jq_ "d['error']['code']+'|'+str(int('already used' in d['error']['message']))")"
expect "not JSON: 400" 400 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' -d '{"title": ')"
expect "... code bad_json" bad_json "$(jq_ "d['error']['code']")"
printf '{"title":"bad \xff utf8"}' >"$T/bad.json"
expect "invalid UTF-8 in JSON: 400" 400 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' --data-binary "@$T/bad.json")"
expect "a title over 255 bytes: 422" 422 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' -d "{\"title\":\"$(head -c 300 /dev/zero | tr '\0' t)\"}")"
expect "... naming the field" "invalid|1" "$(jq_ "d['error']['code']+'|'+str(int(d['error']['message'].startswith('title:')))")"
python3 -c "import json; print(json.dumps({'title':'Big','markdown':'a'*2200000}))" >"$T/big.json"
expect "Markdown over 2 MiB: 413" 413 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' --data-binary "@$T/big.json")"
expect "... code too_large" too_large "$(jq_ "d['error']['code']")"
expect "a wrong field type: 422" 422 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' -d '{"title":5}')"
expect "an unknown post: 404" 404 "$(api "$KEY" GET /posts/999999)"
expect "script tags in a title stay text in JSON" 201 "$(api "$KEY" POST /posts -H 'Content-Type: application/json' -d '{"title":"<script>x</script>"}')"
expect "... stored as given" "<script>x</script>" "$(jq_ "d['post']['title']")"
expect "contributor key: create a draft" 201 "$(api "$CKEY" POST /posts -H 'Content-Type: application/json' -d '{"title":"Contributor API draft"}')"
CP=$(jq_ "d['post']['id']")
expect "contributor key: publish refused (403)" 403 "$(api "$CKEY" POST "/posts/$CP/publish")"
expect "... code forbidden" forbidden "$(jq_ "d['error']['code']")"
expect "contributor key: create as published refused (403)" 403 "$(api "$CKEY" POST /posts -H 'Content-Type: application/json' -d '{"title":"Sneaky API","status":"published"}')"
expect "... nothing saved" 0 "$(db "select count(*) from posts where title = 'Sneaky API'")"
expect "contributor key: the owner's post refused (403)" 403 "$(api "$CKEY" PUT "/posts/$P1" -H 'Content-Type: application/json' -d '{"title":"x"}')"
expect "contributor key: users refused (403)" 403 "$(api "$CKEY" GET /users)"
expect "contributor key: settings refused (403)" 403 "$(api "$CKEY" PUT /settings -H 'Content-Type: application/json' -d '{"title":"x"}')"
expect "owner key: users" 200 "$(api "$KEY" GET /users)"
expect "owner key: add a user (201)" 201 "$(api "$KEY" POST /users -H 'Content-Type: application/json' -d "{\"email\":\"api@example.com\",\"name\":\"Api Person\",\"role\":\"author\",\"password\":\"$PW\"}")"
expect "... a duplicate email: 409" 409 "$(api "$KEY" POST /users -H 'Content-Type: application/json' -d "{\"email\":\"api@example.com\",\"name\":\"Api Person 2\",\"role\":\"author\",\"password\":\"$PW\"}")"
expect "owner key: tags" 200 "$(api "$KEY" GET /tags)"
expect "owner key: add a tag" 200 "$(api "$KEY" POST /tags -H 'Content-Type: application/json' -d '{"name":"From API"}')"
expect "owner key: settings" 200 "$(api "$KEY" PUT /settings -H 'Content-Type: application/json' -d '{"description":"Set by the API","posts_per_page":9}')"
expect "... applied" "Set by the API|9" "$(jq_ "d['settings']['description']+'|'+str(d['settings']['posts_per_page'])")"
expect "owner key: delete a post" 200 "$(api "$KEY" DELETE "/posts/$AP")"
expect "... gone" 0 "$(db "select count(*) from posts where id = $AP")"

# ---- logout ------------------------------------------------------------------------------------
cp "$T/editor" "$T/editor.old"
expect "sign out (303)" 303 "$(req editor POST /admin/logout --data-urlencode "_csrf=$ET")"
cp "$T/editor.old" "$T/editor"
expect "the old session cookie no longer works" 303 "$(req editor GET /admin/posts)"

# ---- login rate limiting (last: it locks this address) -------------------------------------------
for i in 1 2 3 4 5; do login rl author2@example.com 'not the password' >/dev/null; done
expect "after 5 failures the account is locked, even with the right password (429)" 429 "$(login rl author2@example.com "$PW")"
contains "... with Retry-After" "$T/h" "Retry-After: [0-9]+"
contains "... and a clear message" "$T/b" "Too many failed sign-ins"
expect "another account from the same address still signs in" 303 "$(login rl2 editor@example.com "$PW")"
for i in $(seq 1 15); do login rl3 "nobody$i@example.com" 'nope nope nope' >/dev/null; done
expect "after 20 failures from one address, it is locked for everyone (429)" 429 "$(login rl4 editor@example.com "$PW")"

kill -TERM "$SERVE_PID"
for _ in $(seq 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVE_PID" 2>/dev/null; then bad "SIGTERM stops serve"; else
    wait "$SERVE_PID"; rc=$?; SERVE_PID=
    expect "SIGTERM stops serve (admin included) cleanly" 0 "$rc"
fi
grep -qE "[0-9a-f]{64}" "$T/serve.err" && bad "a token appears in the logs" || ok "no tokens or keys in the logs"
echo "cms_admin.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
