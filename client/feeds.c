/* feeds.c - RSS, Atom, JSON Feed and sitemap documents.
 *
 * XML is written by hand (it is only elements and escaped text); JSON goes
 * through jansson so that its escaping is right by construction.
 */
#include "feeds.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------
 * Dates and escaping
 * ------------------------------------------------------------------------------ */

static int64_t or_now(int64_t t)
{
    return t > 0 ? t : (int64_t)time(NULL);
}

void feeds_rfc822(int64_t t, char *out)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    static const char *days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's
 * days-to-civil arithmetic). */
void feeds_civil(int64_t t, int *y, int *m, int *d, int *secs)
{
    int64_t days = t / 86400, rem = t % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    *secs = (int)rem;
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

void feeds_rfc3339(int64_t t, char *out)
{
    int y, m, d, secs;
    feeds_civil(t, &y, &m, &d, &secs);
    if (y < 1000 || y > 9999) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return;
    }
    /* By hand (every card of a page has dates): gmtime_r takes the time zone lock
     * on each call and strftime is slow. */
    const int v[6] = { y, m, d, secs / 3600, secs / 60 % 60, secs % 60 };
    const int w[6] = { 4, 2, 2, 2, 2, 2 };
    const char sep[6] = { '-', '-', 'T', ':', ':', 'Z' };
    char *o = out;
    for (int i = 0; i < 6; i++) {
        int x = v[i];
        for (int k = w[i] - 1; k >= 0; k--) {
            o[k] = (char)('0' + x % 10);
            x /= 10;
        }
        o += w[i];
        *o++ = sep[i];
    }
    *o = '\0';
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid. */
static int utf8_seq(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    int n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (left < (size_t)n)
        return 0;
    unsigned cp = c & (0x7fu >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    /* U+FFFE and U+FFFF are not XML characters either */
    if (cp == 0xfffe || cp == 0xffff)
        return 0;
    return n;
}

void feeds_xml_escape(buf_t *out, const char *s)
{
    if (s == NULL)
        return;
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c < 0x80) {
            switch (c) {
            case '&': buf_puts(out, "&amp;"); break;
            case '<': buf_puts(out, "&lt;"); break;
            case '>': buf_puts(out, "&gt;"); break;
            case '"': buf_puts(out, "&quot;"); break;
            case '\'': buf_puts(out, "&apos;"); break;
            default:
                /* XML 1.0 allows only tab, newline and carriage return below 0x20 */
                if (c >= 0x20 || c == '\t' || c == '\n' || c == '\r')
                    buf_putc(out, (char)c);
                break;
            }
            i++;
            continue;
        }
        int n = utf8_seq(p + i, len - i);
        if (n == 0) {
            buf_puts(out, "\xef\xbf\xbd"); /* U+FFFD */
            i++;
        } else {
            buf_append(out, s + i, (size_t)n);
            i += (size_t)n;
        }
    }
}

static void element(buf_t *out, const char *indent, const char *name, const char *text)
{
    if (text == NULL)
        return;
    buf_printf(out, "%s<%s>", indent, name);
    feeds_xml_escape(out, text);
    buf_printf(out, "</%s>\n", name);
}

static void post_url(buf_t *b, const feed_t *f, const proto_post_t *p)
{
    buf_reset(b);
    buf_printf(b, "%s/%s/", f->site->url ? f->site->url : "", p->slug ? p->slug : "");
}

/* ---------------------------------------------------------------------------------
 * RSS 2.0
 * ------------------------------------------------------------------------------ */

void feeds_rss(buf_t *out, const feed_t *f)
{
    char date[40];
    buf_t url = BUF_INIT;
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\" "
                  "xmlns:dc=\"http://purl.org/dc/elements/1.1/\" "
                  "xmlns:content=\"http://purl.org/rss/1.0/modules/content/\">\n<channel>\n");
    element(out, "  ", "title", f->title);
    element(out, "  ", "link", f->link);
    element(out, "  ", "description", f->description ? f->description : "");
    buf_puts(out, "  <atom:link href=\"");
    feeds_xml_escape(out, f->self_url);
    buf_puts(out, "\" rel=\"self\" type=\"application/rss+xml\"/>\n");
    element(out, "  ", "generator", "OneBlog");
    if (f->site->locale)
        element(out, "  ", "language", f->site->locale);
    feeds_rfc822(or_now(f->updated), date);
    element(out, "  ", "lastBuildDate", date);
    for (int i = 0; i < f->nposts; i++) {
        const proto_post_t *p = &f->posts[i];
        post_url(&url, f, p);
        buf_puts(out, "  <item>\n");
        element(out, "    ", "title", p->title);
        element(out, "    ", "link", url.data);
        buf_puts(out, "    <guid isPermaLink=\"true\">");
        feeds_xml_escape(out, url.data);
        buf_puts(out, "</guid>\n");
        for (int a = 0; a < p->nauthors; a++)
            element(out, "    ", "dc:creator", p->authors[a].name);
        for (int t = 0; t < p->ntags; t++)
            if (!p->tags[t].internal)
                element(out, "    ", "category", p->tags[t].name);
        if (p->published_at) {
            feeds_rfc822(p->published_at, date);
            element(out, "    ", "pubDate", date);
        }
        element(out, "    ", "description", p->excerpt ? p->excerpt : "");
        if (p->html)
            element(out, "    ", "content:encoded", p->html);
        buf_puts(out, "  </item>\n");
    }
    buf_puts(out, "</channel>\n</rss>\n");
    buf_free(&url);
}

/* ---------------------------------------------------------------------------------
 * Atom 1.0
 * ------------------------------------------------------------------------------ */

static void link_el(buf_t *out, const char *indent, const char *rel, const char *type,
                    const char *href)
{
    buf_printf(out, "%s<link rel=\"%s\"", indent, rel);
    if (type)
        buf_printf(out, " type=\"%s\"", type);
    buf_puts(out, " href=\"");
    feeds_xml_escape(out, href);
    buf_puts(out, "\"/>\n");
}

void feeds_atom(buf_t *out, const feed_t *f)
{
    char date[40];
    buf_t url = BUF_INIT;
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    element(out, "  ", "title", f->title);
    if (f->description && *f->description)
        element(out, "  ", "subtitle", f->description);
    element(out, "  ", "id", f->self_url);
    link_el(out, "  ", "self", "application/atom+xml", f->self_url);
    link_el(out, "  ", "alternate", "text/html", f->link);
    feeds_rfc3339(or_now(f->updated), date);
    element(out, "  ", "updated", date);
    buf_puts(out, "  <generator>OneBlog</generator>\n");
    for (int i = 0; i < f->nposts; i++) {
        const proto_post_t *p = &f->posts[i];
        post_url(&url, f, p);
        buf_puts(out, "  <entry>\n");
        element(out, "    ", "title", p->title);
        element(out, "    ", "id", url.data);
        link_el(out, "    ", "alternate", "text/html", url.data);
        feeds_rfc3339(p->published_at ? p->published_at : or_now(p->updated_at), date);
        element(out, "    ", "published", date);
        feeds_rfc3339(p->updated_at ? p->updated_at : or_now(p->published_at), date);
        element(out, "    ", "updated", date);
        for (int a = 0; a < p->nauthors; a++) {
            buf_puts(out, "    <author>\n");
            element(out, "      ", "name", p->authors[a].name);
            buf_puts(out, "    </author>\n");
        }
        for (int t = 0; t < p->ntags; t++) {
            if (p->tags[t].internal)
                continue;
            buf_puts(out, "    <category term=\"");
            feeds_xml_escape(out, p->tags[t].name);
            buf_puts(out, "\"/>\n");
        }
        if (p->excerpt)
            element(out, "    ", "summary", p->excerpt);
        if (p->html) {
            buf_puts(out, "    <content type=\"html\">");
            feeds_xml_escape(out, p->html);
            buf_puts(out, "</content>\n");
        }
        buf_puts(out, "  </entry>\n");
    }
    buf_puts(out, "</feed>\n");
    buf_free(&url);
}

/* ---------------------------------------------------------------------------------
 * JSON Feed 1.1
 * ------------------------------------------------------------------------------ */

/* jansson refuses invalid UTF-8: pass it through the XML cleaner's UTF-8 rules
 * first (without the XML escaping) by building a clean copy. */
static json_t *jstr(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *j = json_string(s);
    if (j)
        return j;
    buf_t b = BUF_INIT;
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        int n = utf8_seq(p + i, len - i);
        if (n == 0) {
            buf_puts(&b, "\xef\xbf\xbd");
            i++;
        } else {
            buf_append(&b, s + i, (size_t)n);
            i += (size_t)n;
        }
    }
    j = json_string(b.data ? b.data : "");
    buf_free(&b);
    return j ? j : json_string("");
}

void feeds_json(buf_t *out, const feed_t *f)
{
    char date[40];
    buf_t url = BUF_INIT;
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("https://jsonfeed.org/version/1.1"));
    json_object_set_new(root, "title", jstr(f->title));
    json_object_set_new(root, "home_page_url", jstr(f->link));
    json_object_set_new(root, "feed_url", jstr(f->self_url));
    if (f->description && *f->description)
        json_object_set_new(root, "description", jstr(f->description));
    if (f->site->locale)
        json_object_set_new(root, "language", jstr(f->site->locale));
    json_t *items = json_array();
    for (int i = 0; i < f->nposts; i++) {
        const proto_post_t *p = &f->posts[i];
        post_url(&url, f, p);
        json_t *it = json_object();
        json_object_set_new(it, "id", jstr(url.data));
        json_object_set_new(it, "url", jstr(url.data));
        json_object_set_new(it, "title", jstr(p->title));
        if (p->html)
            json_object_set_new(it, "content_html", jstr(p->html));
        else
            json_object_set_new(it, "content_text", jstr(p->excerpt ? p->excerpt : ""));
        if (p->excerpt)
            json_object_set_new(it, "summary", jstr(p->excerpt));
        if (p->feature_image)
            json_object_set_new(it, "image", jstr(p->feature_image));
        if (p->published_at) {
            feeds_rfc3339(p->published_at, date);
            json_object_set_new(it, "date_published", json_string(date));
        }
        if (p->updated_at) {
            feeds_rfc3339(p->updated_at, date);
            json_object_set_new(it, "date_modified", json_string(date));
        }
        if (p->nauthors > 0) {
            json_t *authors = json_array();
            for (int a = 0; a < p->nauthors; a++) {
                json_t *au = json_object();
                json_object_set_new(au, "name", jstr(p->authors[a].name));
                buf_reset(&url);
                buf_printf(&url, "%s/author/%s/", f->site->url ? f->site->url : "",
                           p->authors[a].slug ? p->authors[a].slug : "");
                json_object_set_new(au, "url", jstr(url.data));
                json_array_append_new(authors, au);
            }
            json_object_set_new(it, "authors", authors);
        }
        json_t *tags = json_array();
        for (int t = 0; t < p->ntags; t++)
            if (!p->tags[t].internal)
                json_array_append_new(tags, jstr(p->tags[t].name));
        if (json_array_size(tags) > 0)
            json_object_set_new(it, "tags", tags);
        else
            json_decref(tags);
        json_array_append_new(items, it);
    }
    json_object_set_new(root, "items", items);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        buf_puts(out, s);
        buf_putc(out, '\n');
        free(s);
    }
    json_decref(root);
    buf_free(&url);
}

/* ---------------------------------------------------------------------------------
 * Sitemaps
 * ------------------------------------------------------------------------------ */

int feeds_sitemap_pages(int nentries)
{
    return nentries <= FEEDS_SITEMAP_MAX ? 1 : (nentries + FEEDS_SITEMAP_MAX - 1) / FEEDS_SITEMAP_MAX;
}

void feeds_sitemap(buf_t *out, const char *base_url, const proto_sitemap_entry_t *e, int n,
                   int page)
{
    char date[40];
    int from = (page - 1) * FEEDS_SITEMAP_MAX;
    int to = from + FEEDS_SITEMAP_MAX < n ? from + FEEDS_SITEMAP_MAX : n;
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    for (int i = from < 0 ? 0 : from; i < to; i++) {
        buf_puts(out, "  <url><loc>");
        feeds_xml_escape(out, base_url);
        feeds_xml_escape(out, e[i].path);
        buf_puts(out, "</loc>");
        if (e[i].lastmod) {
            feeds_rfc3339(e[i].lastmod, date);
            buf_printf(out, "<lastmod>%s</lastmod>", date);
        }
        buf_puts(out, "</url>\n");
    }
    buf_puts(out, "</urlset>\n");
}

void feeds_sitemap_index(buf_t *out, const char *base_url, int pages, int64_t lastmod)
{
    char date[40];
    feeds_rfc3339(or_now(lastmod), date);
    buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    for (int i = 1; i <= pages; i++) {
        buf_puts(out, "  <sitemap><loc>");
        feeds_xml_escape(out, base_url);
        buf_printf(out, "/sitemap-%d.xml</loc><lastmod>%s</lastmod></sitemap>\n", i, date);
    }
    buf_puts(out, "</sitemapindex>\n");
}
