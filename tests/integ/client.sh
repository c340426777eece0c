#!/usr/bin/env bash
# tests/integ/client.sh BUILD - oneblog-client end to end against a real
# `oneblog-cms serve` with the demo content, both on loopback with a private EPMD:
# every reader route, SEO head, feeds and sitemap through xmllint, the cache
# (HIT, ETag/304, gzip), invalidation by {content_changed, ...} (a real erl node
# unpublishes and republishes a post through `cms`), old slug -> 301, the 404 page,
# the reader cookie, hostile paths and queries, and the CMS going away: stale
# pages, a fast friendly 503, /readyz. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh

POST=why-we-built-our-blog-on-the-beam-model-in-c
# Recommendations off: this script checks the shared, cacheable post page ("Read
# next", ETag, gzip); the personalised block is client_recs.sh's.
ONEBLOG_RECS=off cms_start cms || { bad "cms starts"; summary; exit 1; }
cp -r themes/default "$T/theme"
client_start cms@127.0.0.1 ONEBLOG_THEME_DIR="$T/theme" || { bad "client starts"; summary; exit 1; }
check "client becomes ready (finds cms through the cluster)" wait_ready

get() { curl -s --max-time 10 "$BASE$1"; }
head_of() { curl -s -o /dev/null -D - --max-time 10 "${@:2}" "$BASE$1" | tr -d '\r'; }

# --- pages -------------------------------------------------------------------------
check "home: 200 with post cards" sh -c "curl -s '$BASE/' | grep -q 'href=\"$BASE/latency-budgets-for-a-blog/\"'"
check "home: <title> is the site's" sh -c "curl -s '$BASE/' | grep -q '<title>OneBlog</title>'"
check "/page/2/: 200, older posts, links back" sh -c "curl -s '$BASE/page/2/' | grep -q 'rel=\"prev\"'"
check "/page/1/ -> 301 /" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' '$BASE/page/1/')\" = '301 $BASE/' ]"
check "/page/999/ -> 404" [ "$(status /page/999/)" = 404 ]
get "/$POST/" >"$T/post.html"
check "post: 200 and its body" grep -q '<h1 class="post__title">Why we built our blog on the BEAM model, in C</h1>' "$T/post.html"
check "post: canonical URL" grep -q "<link rel=\"canonical\" href=\"$BASE/$POST/\">" "$T/post.html"
check "post: meta description" grep -q '<meta name="description" content="Processes, mailboxes' "$T/post.html"
check "post: OpenGraph article + image" sh -c "grep -q 'og:type\" content=\"article' '$T/post.html' && grep -q 'og:image\" content=\"$BASE/content/images/' '$T/post.html'"
check "post: Twitter card" grep -q 'twitter:card" content="summary_large_image"' "$T/post.html"
jsonld() {
    python3 - "$T/post.html" <<'PY'
import json, re, sys
html = open(sys.argv[1]).read()
m = re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
d = json.loads(m.group(1))
assert d["@type"] == "BlogPosting" and d["headline"].startswith("Why we built"), d
assert d["author"][0]["name"] == "Maya Chen" and d["datePublished"].startswith("2024-01-08")
PY
}
check "post: JSON-LD BlogPosting parses" jsonld
check "post: reading time" grep -q 'min read' "$T/post.html"
check "post: images have alt text" sh -c "! grep -o '<img [^>]*>' '$T/post.html' | grep -v 'alt=\"[^\"]'"
check "post: \"Read next\" from shared tags" grep -q 'Read next' "$T/post.html"
check "page /about/: 200" sh -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$BASE/about/') = 200 ]"
check "tag page: 200 with its name" sh -c "curl -s '$BASE/tag/engineering/' | grep -q 'intro__title\">Engineering<'"
check "unknown tag: 404" [ "$(status /tag/no-such-tag/)" = 404 ]
check "author page: 200 with the author" sh -c "curl -s '$BASE/author/maya-chen/' | grep -q 'intro__title\">Maya Chen<'"
check "search finds a post" sh -c "curl -s '$BASE/search?q=supervisor+restarts' | grep -q 'how-our-supervisors-restart-things'"
check "search with nothing found: 200" sh -c "curl -s '$BASE/search?q=zzzqqqxxx' | grep -q 'Nothing matched'"
head_of "/search?q=supervisor+restarts" >/dev/null
check "search results are cached (the same query, escaped otherwise: a HIT)" sh -c "curl -s -o /dev/null -D - '$BASE/search?q=supervisor%20restarts' | grep -qi '^x-cache: HIT'"
check "search: another page of results is its own entry" sh -c "! curl -s -o /dev/null -D - '$BASE/search?q=supervisor+restarts&page=2' | grep -qi '^x-cache: HIT'"
check "unknown slug: 404 page with status 404" sh -c "[ \$(curl -s -o '$T/404' -w '%{http_code}' '$BASE/no-such-post/') = 404 ] && grep -q 'Page not found' '$T/404'"
check "a slug without its slash -> 301 with it" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' '$BASE/$POST')\" = '301 $BASE/$POST/' ]"
python3 - "$T/cms/oneblog.db" "$POST" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
pid = db.execute("select id from posts where slug = ?", (sys.argv[2],)).fetchone()[0]
db.execute("insert into slug_redirects (slug, post_id) values ('an-old-slug', ?)", (pid,))
db.commit()
PY
check "old slug -> 301 to the new one" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' '$BASE/an-old-slug/')\" = '301 $BASE/$POST/' ]"
check "robots.txt points at the sitemap" sh -c "curl -s '$BASE/robots.txt' | grep -q '^Sitemap: $BASE/sitemap.xml'"

# --- feeds and sitemap -------------------------------------------------------------
xml_ok() { curl -s "$BASE$1" >"$T/doc.xml" && xmllint --noout "$T/doc.xml" && grep -q "$2" "$T/doc.xml"; }
check "RSS 2.0 is well-formed (xmllint)" xml_ok /rss/ '<rss version="2.0"'
check "Atom is well-formed (xmllint)" xml_ok /atom.xml '<feed xmlns="http://www.w3.org/2005/Atom"'
check "tag RSS is well-formed" xml_ok /tag/engineering/rss/ 'Engineering'
check "author RSS is well-formed" xml_ok /author/maya-chen/rss/ 'Maya Chen'
check "sitemap.xml is well-formed and lists posts" xml_ok /sitemap.xml "<loc>$BASE/$POST/</loc>"
check "JSON Feed parses" sh -c "curl -s '$BASE/feed.json' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"version\"].startswith(\"https://jsonfeed.org/version/1\") and len(d[\"items\"]) > 5'"
check "feeds have their content types" sh -c "curl -s -o /dev/null -w '%{content_type}' '$BASE/rss/' | grep -q rss+xml"

# --- cache, ETag, gzip, assets, cookie ---------------------------------------------
head_of "/$POST/" >"$T/h1"
check "a page seen before is a cache HIT" grep -qi '^x-cache: HIT' "$T/h1"
etag=$(grep -i '^etag:' "$T/h1" | cut -d' ' -f2)
check "If-None-Match -> 304" [ "$(status "/$POST/" -H "If-None-Match: $etag")" = 304 ]
check "gzip when accepted" sh -c "curl -s -D - -o '$T/gz' -H 'Accept-Encoding: gzip' '$BASE/$POST/' | grep -qi '^content-encoding: gzip' && gzip -dc '$T/gz' | grep -q 'post__title'"
gzetag=$(curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' "$BASE/$POST/" | grep -i '^etag:' | cut -d' ' -f2 | tr -d '\r')
check "the gzip copy's ETag (\"...-gz\") -> 304 too" [ "$(status "/$POST/" -H 'Accept-Encoding: gzip' -H "If-None-Match: $gzetag")" = 304 ]
css=$(grep -o '/assets/style\.[0-9a-f]*\.css' "$T/post.html" | head -1)
check "stylesheet has a fingerprinted name" [ -n "$css" ]
# Accept-Encoding is read as RFC 9110 says (the library's parser, for pages and
# assets alike): q=0 refuses gzip however it is spelt, "*" takes it.
for ae in 'gzip;q=0' 'gzip; q=0.0' 'br, gzip;q=0.000, *;q=0.5' 'gzip;level=1;q=0'; do
    check "no gzip for Accept-Encoding: $ae (page, asset)" sh -c "! curl -s -D - -o /dev/null -H 'Accept-Encoding: $ae' '$BASE/$POST/' | grep -qi '^content-encoding: gzip' &&
        ! curl -s -D - -o /dev/null -H 'Accept-Encoding: $ae' '$BASE$css' | grep -qi '^content-encoding: gzip'"
done
check "gzip for Accept-Encoding: br;q=1, *;q=0.1 (page, asset)" sh -c "curl -s -D - -o /dev/null -H 'Accept-Encoding: br;q=1, *;q=0.1' '$BASE/$POST/' | grep -qi '^content-encoding: gzip' &&
    curl -s -D - -o /dev/null -H 'Accept-Encoding: br;q=1, *;q=0.1' '$BASE$css' | grep -qi '^content-encoding: gzip'"
# Two Accept-Encoding fields are one list (RFC 9110 section 5.3): gzip named in the
# second only is taken.
check "gzip for Accept-Encoding: br + Accept-Encoding: gzip (page, asset)" sh -c "curl -s -D - -o /dev/null -H 'Accept-Encoding: br' -H 'Accept-Encoding: gzip' '$BASE/$POST/' | grep -qi '^content-encoding: gzip' &&
    curl -s -D - -o /dev/null -H 'Accept-Encoding: br' -H 'Accept-Encoding: gzip' '$BASE$css' | grep -qi '^content-encoding: gzip'"
check "fingerprinted asset: a year, immutable" sh -c "curl -s -D - -o /dev/null '$BASE$css' | grep -qi '^cache-control: public, max-age=31536000, immutable'"
check "reader cookie: HttpOnly, SameSite=Lax" sh -c "curl -s -D - -o /dev/null '$BASE/' | grep -qiE '^set-cookie: ob_rid=[0-9a-f]{32}; Max-Age=[0-9]+; Path=/; HttpOnly; SameSite=Lax'"
rid() { curl -s -D - -o /dev/null "$BASE/" | sed -n 's/^[Ss]et-[Cc]ookie: ob_rid=\([0-9a-f]*\);.*/\1/p'; }
RID1=$(rid) RID2=$(rid) RID3=$(rid)
check "reader cookie: a new id per new reader ($RID1 $RID2 $RID3)" \
    sh -c "[ ${#RID1} -eq 32 ] && [ '$RID1' != '$RID2' ] && [ '$RID2' != '$RID3' ] && [ '$RID1' != '$RID3' ]"
check "reader cookie: kept when sent back" sh -c "! curl -s -D - -o /dev/null -H 'Cookie: ob_rid=0123456789abcdef0123456789abcdef' '$BASE/' | grep -qi '^set-cookie'"
check "/healthz 200 with counters" sh -c "curl -s '$BASE/healthz' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"status\"]==\"ok\" and d[\"cache\"][\"hits\"] > 0'"

# --- invalidation: a real erl node unpublishes, then republishes, a post ------------
if command -v erl >/dev/null; then
    erl_cms() { # erl_cms EXPR : evaluate with N = the cms node
        timeout 30 erl -name "t$$-$RANDOM@127.0.0.1" -setcookie "$ONEBLOG_COOKIE" -noshell -eval "
            N = 'cms@127.0.0.1',
            {ok, P} = gen_server:call({cms, N}, {get_post, <<\"$POST\">>}),
            Id = maps:get(id, P), $1, io:format(\"erl-ok~n\"), halt()." 2>&1 | grep -q erl-ok
    }
    curl -s "$BASE/tag/erlang/" >/dev/null  # a listing cached with the post on it
    curl -s "$BASE/search?q=beam+model" >"$T/s1"  # a search cached with the post in it
    check "search finds the post before it is unpublished" grep -q "href=\"$BASE/$POST/\"" "$T/s1"
    check "erl: unpublish the post" erl_cms '{ok, _} = gen_server:call({cms, N}, {unpublish, Id})'
    gone() { for _ in $(seq 300); do [ "$(status "/$POST/")" = 404 ] && return 0; sleep 0.1; done; return 1; }
    check "content_changed: the unpublished post is a 404 at once" gone
    check "content_changed: its tag page no longer lists it" sh -c "! curl -s '$BASE/tag/erlang/' | grep -q 'href=\"$BASE/$POST/\"'"
    check "content_changed: a cached search no longer finds it" sh -c "! curl -s '$BASE/search?q=beam+model' | grep -q 'href=\"$BASE/$POST/\"'"
    python3 - "$T/cms/oneblog.db" "$POST" >"$T/id" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select id from posts where slug = ?", (sys.argv[2],)).fetchone()[0])
PY
    check "erl: publish it again" sh -c "timeout 30 erl -name 't$$-r@127.0.0.1' -setcookie '$ONEBLOG_COOKIE' -noshell -eval \"{ok, _} = gen_server:call({cms, 'cms@127.0.0.1'}, {publish, $(cat "$T/id")}), io:format(\\\"erl-ok~n\\\"), halt().\" | grep -q erl-ok"
    back() { for _ in $(seq 300); do [ "$(status "/$POST/")" = 200 ] && return 0; sleep 0.1; done; return 1; }
    check "content_changed: the republished post is back" back
else
    bad "erl is not installed (make deps): invalidation is not tested"
fi

# --- hostile input -----------------------------------------------------------------
hostile_4xx() { local s; s=$(status "$1"); case $s in 4??) return 0;; *) echo "$1 -> $s"; return 1;; esac; }
check "traversal /../../etc/passwd -> 4xx" sh -c "s=\$(curl -s --path-as-is -o /dev/null -w '%{http_code}' '$BASE/../../etc/passwd'); case \$s in 4??) exit 0;; esac; echo \$s; exit 1"
check "encoded traversal in assets -> 4xx" hostile_4xx "/assets/..%2f..%2fetc%2fpasswd"
check "encoded traversal in images -> 4xx" hostile_4xx "/content/images/..%2f..%2fetc%2fpasswd"
check "invalid UTF-8 in a slug -> 4xx" hostile_4xx "/%ff%fe/"
check "invalid UTF-8 in a tag -> 4xx" hostile_4xx "/tag/%c0%af/"
check "invalid UTF-8 in the search -> 400" [ "$(status '/search?q=%ff%fe')" = 400 ]
check "bad escape in the search -> 4xx" hostile_4xx "/search?q=%zz"
check "a NUL in the path -> 4xx" hostile_4xx "/a%00b/"
check "huge search query -> 4xx" hostile_4xx "/search?q=$(head -c 3000 /dev/zero | tr '\0' a)"
check "huge path -> 4xx" hostile_4xx "/$(head -c 20000 /dev/zero | tr '\0' a)/"
check "huge slug (under the header limit) -> 4xx" hostile_4xx "/$(head -c 4000 /dev/zero | tr '\0' a)/"
check "page number overflow -> 4xx" hostile_4xx "/page/99999999999999999999/"
check "//host in the path is not an open redirect" sh -c "! curl -s -o /dev/null -w '%{redirect_url}' '$BASE//evil.example' | grep -q evil"
check "POST to a page -> 405" [ "$(status "/$POST/" -X POST)" = 405 ]
check "still serving after all that" [ "$(status /)" = 200 ]

# --- SIGHUP reloads the theme (and makes every cached page stale) --------------------
curl -s "$BASE/$POST/" >/dev/null
sed -i 's/Published with OneBlog/Published with OneBlog (reloaded-theme-marker)/' "$T/theme/templates/footer.mustache"
kill -HUP "$CLIENT_PID"
reloaded() { for _ in $(seq 300); do curl -s "$BASE/" | grep -q reloaded-theme-marker && return 0; sleep 0.1; done; return 1; }
check "SIGHUP: the theme is reloaded, pages re-rendered" reloaded

# --- every CMS node down -------------------------------------------------------------
kill -9 "${CMS_PID[cms]}"; wait "${CMS_PID[cms]}" 2>/dev/null
notready() { for _ in $(seq 300); do [ "$(status /readyz)" = 503 ] && return 0; sleep 0.1; done; return 1; }
check "/readyz 503 once the CMS is gone" notready
head_of "/$POST/" >"$T/h2"
check "stale page still served: 200, X-Cache: STALE" sh -c "grep -q '^HTTP/1.1 200' '$T/h2' && grep -qi '^x-cache: STALE' '$T/h2'"
check "fresh cached page still served: 200" [ "$(status /)" = 200 ]
start=$(date +%s%N)
s=$(curl -s -o "$T/503" -D "$T/503h" -w '%{http_code}' --max-time 10 "$BASE/page/3/")
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "uncached page: friendly 503, fast (${ms} ms), Retry-After" sh -c "[ '$s' = 503 ] && grep -q 'right back' '$T/503' && grep -qi '^retry-after' '$T/503h'"
check "/healthz still 200" [ "$(status /healthz)" = 200 ]

summary
