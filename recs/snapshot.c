/* snapshot.c - writing and reading content snapshots (snapshot.h) with libbson. */
#include "recs/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bson/bson.h>

#include "common/buf.h"

#define FORMAT "oneblog-recs-snapshot"

void recs_snapshot_path(const char *dir, const char *digest, char *out, size_t len)
{
    snprintf(out, len, "%s/%s.snap", dir, digest);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* mkdir -p: the snapshot directory sits under the data directory, whose parents
 * may not exist yet on a first start ($ONEBLOG_DATA_DIR/recs/snapshots). */
static int mkdir_p(const char *dir)
{
    char p[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, dir, len + 1);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int recs_snapshot_write(const recs_index_t *ix, const char *dir, char *err, size_t errlen)
{
    char path[4096], tmp[4200];
    bson_t doc, posts;
    int fd = -1, rc = 0;

    recs_snapshot_path(dir, ix->digest, path, sizeof path);
    if (access(path, F_OK) == 0)
        return 0;
    if ((rc = mkdir_p(dir)) < 0) {
        snprintf(err, errlen, "mkdir %s: %s", dir, strerror(-rc));
        return rc;
    }
    bson_init(&doc);
    BSON_APPEND_UTF8(&doc, "format", FORMAT);
    BSON_APPEND_INT32(&doc, "version", 1);
    BSON_APPEND_UTF8(&doc, "digest", ix->digest);
    bson_append_array_begin(&doc, "posts", -1, &posts);
    for (int i = 0; i < ix->n; i++) {
        const recs_post_t *p = &ix->posts[i];
        bson_t d, tags;
        char kb[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, kb, sizeof kb);
        bson_append_document_begin(&posts, k, -1, &d);
        BSON_APPEND_INT64(&d, "id", p->id);
        BSON_APPEND_UTF8(&d, "slug", p->slug);
        BSON_APPEND_UTF8(&d, "title", p->title ? p->title : "");
        bson_append_array_begin(&d, "tags", -1, &tags);
        for (int t = 0; t < p->ntags; t++) {
            bson_uint32_to_string((uint32_t)t, &k, kb, sizeof kb);
            bson_append_utf8(&tags, k, -1, p->tags[t], -1);
        }
        bson_append_array_end(&d, &tags);
        BSON_APPEND_UTF8(&d, "plaintext", p->plaintext ? p->plaintext : "");
        BSON_APPEND_INT64(&d, "published_at", p->published_at);
        bson_append_document_end(&posts, &d);
    }
    bson_append_array_end(&doc, &posts);

    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444)) < 0 ||
        write_all(fd, bson_get_data(&doc), doc.len) < 0 || fsync(fd) < 0) {
        rc = -(errno ? errno : EIO);
        snprintf(err, errlen, "writing %s: %s", tmp, strerror(-rc));
    }
    if (fd >= 0)
        close(fd);
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -errno;
        snprintf(err, errlen, "rename to %s: %s", path, strerror(errno));
    }
    /* The new name durable too: requests answered from this index log its
     * digest, and replaying them needs the file after a crash. */
    int dfd = rc == 0 ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        if (fsync(dfd) < 0) {
            rc = -errno;
            snprintf(err, errlen, "fsync of %s: %s", dir, strerror(errno));
        }
        close(dfd);
    }
    if (rc < 0)
        unlink(tmp);
    bson_destroy(&doc);
    return rc;
}

static char *iter_dup(const bson_iter_t *it)
{
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    return xstrndup(s ? s : "", s ? len : 0);
}

int recs_snapshot_read(const char *path, recs_index_t **out, char *err, size_t errlen)
{
    struct stat st;
    uint8_t *data = NULL;
    int fd, rc = 0;
    bson_t doc;
    bson_iter_t it, arr;
    recs_post_t *posts = NULL;
    int n = 0, cap = 0;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) < 0 || st.st_size > (off_t)RECS_SNAPSHOT_MAX) {
        close(fd);
        snprintf(err, errlen, "%s: too large or unreadable", path);
        return -EFBIG;
    }
    data = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)st.st_size || !bson_init_static(&doc, data, got) ||
        !bson_validate(&doc, BSON_VALIDATE_UTF8, NULL) ||
        !bson_iter_init_find(&it, &doc, "format") || !BSON_ITER_HOLDS_UTF8(&it) ||
        strcmp(bson_iter_utf8(&it, NULL), FORMAT) != 0 ||
        !bson_iter_init_find(&it, &doc, "posts") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr)) {
        snprintf(err, errlen, "%s: not a content snapshot", path);
        free(data);
        return -EBADMSG;
    }
    while (bson_iter_next(&arr)) {
        bson_iter_t f;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &f)) {
            rc = -EBADMSG;
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            posts = xrealloc(posts, (size_t)cap * sizeof *posts);
        }
        recs_post_t *p = &posts[n++];
        memset(p, 0, sizeof *p);
        while (bson_iter_next(&f)) {
            const char *k = bson_iter_key(&f);
            if (strcmp(k, "id") == 0 && BSON_ITER_HOLDS_INT64(&f))
                p->id = bson_iter_int64(&f);
            else if (strcmp(k, "published_at") == 0 && BSON_ITER_HOLDS_INT64(&f))
                p->published_at = bson_iter_int64(&f);
            else if (strcmp(k, "slug") == 0 && BSON_ITER_HOLDS_UTF8(&f) && !p->slug)
                p->slug = iter_dup(&f);
            else if (strcmp(k, "title") == 0 && BSON_ITER_HOLDS_UTF8(&f) && !p->title)
                p->title = iter_dup(&f);
            else if (strcmp(k, "plaintext") == 0 && BSON_ITER_HOLDS_UTF8(&f) && !p->plaintext)
                p->plaintext = iter_dup(&f);
            else if (strcmp(k, "tags") == 0 && BSON_ITER_HOLDS_ARRAY(&f) && !p->tags) {
                bson_iter_t t;
                bson_iter_recurse(&f, &t);
                while (bson_iter_next(&t))
                    if (BSON_ITER_HOLDS_UTF8(&t)) {
                        p->tags = xrealloc(p->tags, (size_t)(p->ntags + 1) * sizeof *p->tags);
                        p->tags[p->ntags++] = iter_dup(&t);
                    }
            }
        }
    }
    char want[RECS_DIGEST_LEN + 1] = "";
    if (bson_iter_init_find(&it, &doc, "digest") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(want, sizeof want, "%s", bson_iter_utf8(&it, NULL));
    free(data);
    if (rc < 0) {
        for (int i = 0; i < n; i++)
            recs_post_clear(&posts[i]);
        free(posts);
        snprintf(err, errlen, "%s: malformed post", path);
        return rc;
    }
    recs_index_t *ix = recs_index_new(posts, n);
    if (strcmp(ix->digest, want) != 0) {
        snprintf(err, errlen, "%s: digest %s does not match its content (%s)", path, want,
                 ix->digest);
        recs_index_free(ix);
        return -EBADMSG;
    }
    *out = ix;
    return 0;
}
