/* http_static.c - serving files from a directory: sendfile, validators, gzip.
 *
 * A request path is percent-decoded and normalised ("." and empty segments
 * dropped, ".." refused), then looked up relative to the root directory's fd with
 * fstatat(2): one system call per request, which also revalidates the cache. The
 * cache keeps, per path, the open fd, the stat identity (inode, size, mtime), the
 * precomputed ETag and Last-Modified and, made on first demand, a gzip copy of
 * compressible files. An entry whose file changed is replaced; entries are
 * reference counted, because a connection sending a file may be parked while a
 * newer request replaces it. The whole cache is dropped when it reaches its
 * size (simple, and a working set larger than that is not this cache's job).
 *
 * Bodies go out with sendfile(2) after the head (cn_http_reply_file), except
 * files up to mem_max_bytes, kept in memory and written with their head in one
 * system call (measured: see bench/http.sh), and gzip copies. 304 answers If-None-Match (strong ETags, or
 * "*") and, without it, If-Modified-Since.
 */
#include "http_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cnode_int.h"

#define GZIP_MAX_FILE (8u << 20) /* larger files are sent as they are */

struct cn__static_file {
    cn__static_file_t *next;     /* hash chain */
    char *path;                  /* normalised relative path (the key) */
    int fd;
    int refs;                    /* the cache's reference + connections sending it */
    off_t size;
    ino_t ino;
    struct timespec mtime;
    const char *ctype;
    char etag[48];               /* "\"mtime-size\"" */
    char etag_gz[52];            /* the gzip variant: "\"mtime-size-gz\"" */
    char lastmod[30];
    char *mem;                   /* the contents, for small files, or NULL */
    char *gz;                    /* gzip copy, or NULL */
    size_t gz_len;
    bool gz_tried;
};

struct cn_http_static {
    int rootfd;
    char *index;
    int max_age;
    bool gzip;
    size_t max_entries;
    size_t mem_max;              /* files up to this are kept in memory */
    cn__static_file_t **buckets;
    size_t nbuckets, nentries;
    char cache_control[48];      /* the header value, or "" */
};

/* ---------------------------------------------------------------------------------
 * Content types
 * ------------------------------------------------------------------------------ */

static const struct {
    const char *ext, *type;
} types[] = {
    { "html", "text/html; charset=utf-8" },  { "htm", "text/html; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" }, { "json", "application/json" },
    { "txt", "text/plain; charset=utf-8" },  { "md", "text/markdown; charset=utf-8" },
    { "xml", "application/xml" },            { "rss", "application/rss+xml" },
    { "atom", "application/atom+xml" },      { "svg", "image/svg+xml" },
    { "png", "image/png" },                  { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },                { "gif", "image/gif" },
    { "webp", "image/webp" },                { "avif", "image/avif" },
    { "ico", "image/x-icon" },               { "woff", "font/woff" },
    { "woff2", "font/woff2" },               { "pdf", "application/pdf" },
    { "wasm", "application/wasm" },          { "webmanifest", "application/manifest+json" },
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash)) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (cn__http_ieq(dot + 1, types[i].ext, strlen(types[i].ext) + 1))
                return types[i].type;
    }
    return "application/octet-stream";
}

/* ---------------------------------------------------------------------------------
 * Cache
 * ------------------------------------------------------------------------------ */

static size_t hash(const char *s)
{
    size_t h = 14695981039346656037u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void file_unref(cn__static_file_t *f)
{
    if (f == NULL || --f->refs > 0)
        return;
    if (f->fd >= 0)
        close(f->fd);
    cn__free(f->mem);
    cn__free(f->gz);
    cn__free(f->path);
    cn__free(f);
}

void cn__http_static_release(cn__static_file_t *f)
{
    file_unref(f);
}

static void cache_clear(cn_http_static_t *st)
{
    for (size_t i = 0; i < st->nbuckets; i++) {
        while (st->buckets[i]) {
            cn__static_file_t *f = st->buckets[i];
            st->buckets[i] = f->next;
            file_unref(f);
        }
    }
    st->nentries = 0;
}

static bool same_file(const cn__static_file_t *f, const struct stat *sb)
{
    return f->ino == sb->st_ino && f->size == sb->st_size &&
           f->mtime.tv_sec == sb->st_mtim.tv_sec && f->mtime.tv_nsec == sb->st_mtim.tv_nsec;
}

/* The cached entry for path if the file is unchanged, else a fresh one (cached).
 * Returns a borrowed pointer (the cache holds it) or NULL with *err. */
static cn__static_file_t *lookup(cn_http_static_t *st, const char *path, const struct stat *sb,
                                 int *err)
{
    size_t b = hash(path) % st->nbuckets;
    cn__static_file_t **pp = &st->buckets[b];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, path) != 0)
            continue;
        if (same_file(*pp, sb))
            return *pp;
        cn__static_file_t *old = *pp; /* changed on disk: replace it */
        *pp = old->next;
        st->nentries--;
        file_unref(old);
        break;
    }
    int fd = openat(st->rootfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        *err = errno == ENOENT || errno == ENOTDIR ? 404 : 403;
        return NULL;
    }
    /* Describe what was opened, not what was stat'ed a moment before. */
    struct stat fsb;
    cn__static_file_t *f = cn__calloc(1, sizeof(*f));
    size_t plen = strlen(path);
    if (f)
        f->path = cn__malloc(plen + 1);
    if (f == NULL || f->path == NULL || fstat(fd, &fsb) < 0 || !S_ISREG(fsb.st_mode)) {
        *err = f && f->path ? 403 : 503;
        close(fd);
        if (f)
            cn__free(f->path);
        cn__free(f);
        return NULL;
    }
    memcpy(f->path, path, plen + 1);
    f->fd = fd;
    f->refs = 1;
    f->size = fsb.st_size;
    f->ino = fsb.st_ino;
    f->mtime = fsb.st_mtim;
    f->ctype = content_type(path);
    unsigned long long v = (unsigned long long)fsb.st_mtim.tv_sec * 1000u +
                           (unsigned long long)fsb.st_mtim.tv_nsec / 1000000u;
    snprintf(f->etag, sizeof(f->etag), "\"%llx-%llx\"", v, (unsigned long long)fsb.st_size);
    snprintf(f->etag_gz, sizeof(f->etag_gz), "\"%llx-%llx-gz\"", v,
             (unsigned long long)fsb.st_size);
    cn__http_fmt_date(fsb.st_mtim.tv_sec, f->lastmod);
    /* Small files leave from memory with their head, in one write; a failed
     * read just means sendfile. */
    if ((size_t)fsb.st_size <= st->mem_max && fsb.st_size > 0) {
        f->mem = cn__malloc((size_t)fsb.st_size);
        if (f->mem && pread(fd, f->mem, (size_t)fsb.st_size, 0) != fsb.st_size) {
            cn__free(f->mem);
            f->mem = NULL;
        }
    }

    if (st->nentries >= st->max_entries)
        cache_clear(st);
    f->next = st->buckets[b];
    st->buckets[b] = f;
    st->nentries++;
    return f;
}

/* Compress the file once; on any failure the plain file is served. */
static void make_gzip(cn__static_file_t *f)
{
    f->gz_tried = true;
    if (f->size < 256 || (size_t)f->size > GZIP_MAX_FILE)
        return;
    size_t n = (size_t)f->size;
    char *src = cn__malloc(n);
    if (src == NULL)
        return;
    ssize_t r = pread(f->fd, src, n, 0);
    uLongf dlen = compressBound((uLong)n) + 32;
    char *dst = (r == (ssize_t)n) ? cn__malloc(dlen) : NULL;
    if (dst) {
        z_stream z = { 0 };
        if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK) {
            z.next_in = (Bytef *)src;
            z.avail_in = (uInt)n;
            z.next_out = (Bytef *)dst;
            z.avail_out = (uInt)dlen;
            if (deflate(&z, Z_FINISH) == Z_STREAM_END && z.total_out < n) {
                f->gz = dst;
                f->gz_len = z.total_out;
                dst = NULL;
            }
            deflateEnd(&z);
        }
    }
    cn__free(dst);
    cn__free(src);
}

/* ---------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------ */

/* Does an If-None-Match list name etag (or "*")? Weak comparison (W/ ignored). */
static bool etag_match(const char *inm, const char *etag)
{
    size_t el = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == el && memcmp(p, etag, el) == 0)
            return true;
        p = e;
    }
    return false;
}

/* Normalise the decoded path in place: drop empty and "." segments; refuse "..".
 * Returns 0, or the status to answer. */
static int normalise(char *p)
{
    char *w = p;
    const char *r = p;
    while (*r) {
        while (*r == '/')
            r++;
        const char *e = r;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - r);
        if (n == 2 && r[0] == '.' && r[1] == '.')
            return 403;
        if (n > 0 && !(n == 1 && r[0] == '.')) {
            if (w != p)
                *w++ = '/';
            memmove(w, r, n);
            w += n;
        }
        r = e;
    }
    *w = '\0';
    return 0;
}

int cn_http_static_handler(cn_http_req_t *req, void *udata)
{
    cn_http_static_t *st = udata;
    cn__http_conn_t *c = req->conn;
    if (req->method_id != HTTP_GET && req->method_id != HTTP_HEAD) {
        cn_http_set_header(req, "Allow", "GET, HEAD");
        return cn_http_reply_error(req, 405);
    }
    const char *raw = cn_http_param(req, "path");
    bool from_param = raw != NULL;
    if (!from_param)
        raw = req->path;
    size_t rl = strlen(raw);
    bool dir_req = rl == 0 || raw[rl - 1] == '/';
    size_t ilen = strlen(st->index);
    char *path = cn_http_alloc(req, rl + ilen + 2);
    if (path == NULL)
        return -ENOMEM;
    memcpy(path, raw, rl + 1);
    /* A route capture is decoded already; the request path is not. */
    if (!from_param && cn_http_urldecode(path, false) < 0)
        return cn_http_reply_error(req, 400);
    int status = normalise(path);
    if (status)
        return cn_http_reply_error(req, status);
    if (dir_req) {
        size_t pl = strlen(path);
        if (pl)
            path[pl++] = '/';
        memcpy(path + pl, st->index, ilen + 1);
    }
    const char *rel = path[0] ? path : ".";

    struct stat sb;
    if (fstatat(st->rootfd, rel, &sb, 0) < 0)
        return cn_http_reply_error(req, errno == ENOENT || errno == ENOTDIR ? 404 : 403);
    if (S_ISDIR(sb.st_mode)) {
        if (dir_req)
            return cn_http_reply_error(req, 404);
        const char *loc = cn_http_sprintf(req, "%s/%s%s", req->path, req->query ? "?" : "",
                                          req->query ? req->query : "");
        if (loc == NULL)
            return -ENOMEM;
        return cn_http_redirect(req, 301, loc);
    }
    if (!S_ISREG(sb.st_mode))
        return cn_http_reply_error(req, 403);
    int err = 0;
    cn__static_file_t *f = lookup(st, rel, &sb, &err);
    if (f == NULL)
        return cn_http_reply_error(req, err);

    bool compressible = st->gzip && cn__http_compressible(f->ctype);
    bool gz = false;
    if (compressible && cn_http_accepts_gzip(req)) {
        if (!f->gz_tried)
            make_gzip(f);
        gz = f->gz != NULL;
    }
    const char *etag = gz ? f->etag_gz : f->etag;
    int rc;
    if ((rc = cn_http_set_header(req, "ETag", etag)) < 0 ||
        (rc = cn_http_set_header(req, "Last-Modified", f->lastmod)) < 0 ||
        (st->cache_control[0] &&
         (rc = cn_http_set_header(req, "Cache-Control", st->cache_control)) < 0) ||
        (compressible && (rc = cn_http_set_header(req, "Vary", "Accept-Encoding")) < 0))
        return rc;

    const char *inm = cn_http_header(req, "If-None-Match");
    const char *ims = inm ? NULL : cn_http_header(req, "If-Modified-Since");
    if ((inm && (etag_match(inm, etag))) ||
        (ims && cn__http_parse_date(ims) >= (time_t)f->mtime.tv_sec))
        return cn__http_reply_body(req, 304, NULL, NULL, 0, false);

    if (gz) {
        if ((rc = cn_http_set_header(req, "Content-Encoding", "gzip")) < 0)
            return rc;
        return cn__http_reply_body(req, 200, f->ctype, f->gz, f->gz_len, false);
    }
    /* Hold the entry: a newer request may replace it while this one sends. */
    f->refs++;
    c->file = f;
    if (f->mem)
        return cn__http_reply_body(req, 200, f->ctype, f->mem, (size_t)f->size, false);
    return cn_http_reply_file(req, 200, f->ctype, f->fd, 0, (size_t)f->size);
}

/* ---------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------ */

int cn_http_static_new(const cn_http_static_opts_t *o, cn_http_static_t **out)
{
    if (o == NULL || o->root == NULL)
        return -EINVAL;
    const char *index = o->index ? o->index : "index.html";
    if (*index == '\0' || strchr(index, '/'))
        return -EINVAL;
    cn_http_static_t *st = cn__calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    st->rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->rootfd < 0) {
        int rc = -errno;
        cn__free(st);
        return rc;
    }
    st->index = cn__malloc(strlen(index) + 1);
    st->max_entries = o->cache_entries ? o->cache_entries : 256;
    st->nbuckets = st->max_entries;
    st->buckets = cn__calloc(st->nbuckets, sizeof(*st->buckets));
    if (st->index == NULL || st->buckets == NULL) {
        cn_http_static_free(st);
        return -ENOMEM;
    }
    strcpy(st->index, index);
    st->max_age = o->max_age_s;
    /* Capped so the body is copied into the connection's output buffer before
     * the reply returns, never written from the entry while it may be replaced. */
    st->mem_max = o->mem_max_bytes < CN__HTTP_OUT_INLINE ? o->mem_max_bytes : CN__HTTP_OUT_INLINE;
    st->gzip = o->gzip;
    if (o->max_age_s > 0)
        snprintf(st->cache_control, sizeof(st->cache_control), "public, max-age=%d",
                 o->max_age_s);
    else if (o->max_age_s == 0)
        strcpy(st->cache_control, "no-cache");
    *out = st;
    return 0;
}

void cn_http_static_free(cn_http_static_t *st)
{
    if (st == NULL)
        return;
    if (st->buckets)
        cache_clear(st);
    if (st->rootfd >= 0)
        close(st->rootfd);
    cn__free(st->buckets);
    cn__free(st->index);
    cn__free(st);
}
