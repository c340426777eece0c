/* cookie.c - the set of Erlang cookies a node accepts.
 *
 * A node has a list of cookies: the first is the one it presents when it dials
 * out; an incoming challenge reply is accepted when it matches any of them, which
 * is what lets a cluster rotate its cookie without downtime (deploy "new,old",
 * then "new"). The list comes from an explicit string, $ONEBLOG_COOKIE, or a
 * cookie file with one cookie a line; like erl, a cookie file that its group or
 * others may read or write is refused, and a missing ~/.erlang.cookie (the
 * default file only) is created with a random cookie, mode 0400.
 */
#include "dist_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

void cn__cookies_free(cn_cookies_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->n; i++) {
        /* Cookies are secrets: don't leave them in freed memory. */
        volatile char *s = c->v[i];
        for (size_t k = 0; s[k]; k++)
            s[k] = 0;
        cn__free(c->v[i]);
    }
    cn__free(c->v);
    c->v = NULL;
    c->n = 0;
}

int cn__cookies_parse(const char *text, cn_cookies_t *out)
{
    cn_cookies_t c = { NULL, 0 };
    int cap = 0;
    const char *p = text;
    while (p && *p) {
        size_t n = strcspn(p, ",\n");
        const char *s = p, *e = p + n;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        if (e > s) {
            if (c.n == cap) {
                cap = cap ? cap * 2 : 4;
                char **v = cn__realloc(c.v, (size_t)cap * sizeof(*v));
                if (v == NULL)
                    goto nomem;
                c.v = v;
            }
            char *copy = cn__malloc((size_t)(e - s) + 1);
            if (copy == NULL)
                goto nomem;
            memcpy(copy, s, (size_t)(e - s));
            copy[e - s] = '\0';
            c.v[c.n++] = copy;
        }
        p += n;
        if (*p)
            p++;
    }
    if (c.n == 0)
        return -ENOENT;
    cn__cookies_free(out);
    *out = c;
    return 0;
nomem:
    cn__cookies_free(&c);
    return -ENOMEM;
}

static int load_file(const char *path, cn_cookies_t *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cookie file %s: %s", path, strerror(e));
        return e == EACCES ? -EACCES : -ENOENT;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "cookie file %s: not a regular file", path);
        return -ENOENT;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        snprintf(err, errlen, "cookie file %s must be accessible by owner only", path);
        return -EACCES;
    }
    char buf[4096];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[got] = '\0';
    int rc = cn__cookies_parse(buf, out);
    memset(buf, 0, sizeof(buf));
    if (rc == -ENOENT)
        snprintf(err, errlen, "cookie file %s is empty", path);
    return rc;
}

/* erl's behaviour for a missing default cookie file: 20 random upper-case
 * letters, readable by the owner only. Returns 0 or a negative errno. */
static int create_default(const char *path)
{
    uint8_t rnd[20];
    char cookie[21];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return -EIO;
    for (int i = 0; i < 20; i++)
        cookie[i] = (char)('A' + rnd[i] % 26);
    cookie[20] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, cookie, sizeof(cookie));
    close(fd);
    memset(cookie, 0, sizeof(cookie));
    return w == (ssize_t)sizeof(cookie) ? 0 : -EIO;
}

int cn__cookies_load(const char *explicit_text, const char *file, cn_cookies_t *out,
                     char *err, size_t errlen)
{
    err[0] = '\0';
    if (explicit_text) {
        int rc = cn__cookies_parse(explicit_text, out);
        if (rc == -ENOENT)
            snprintf(err, errlen, "the cookie option is empty");
        return rc;
    }
    const char *env = getenv("ONEBLOG_COOKIE");
    if (env && *env) {
        int rc = cn__cookies_parse(env, out);
        if (rc == -ENOENT)
            snprintf(err, errlen, "ONEBLOG_COOKIE holds no cookie");
        return rc;
    }
    if (file == NULL)
        file = getenv("ONEBLOG_COOKIE_FILE");
    char path[4096];
    if (file == NULL || *file == '\0') {
        const char *home = getenv("HOME");
        if (home == NULL) {
            snprintf(err, errlen, "no cookie: set ONEBLOG_COOKIE or HOME");
            return -ENOENT;
        }
        snprintf(path, sizeof(path), "%s/.erlang.cookie", home);
        if (access(path, F_OK) < 0 && errno == ENOENT) {
            int rc = create_default(path);
            if (rc < 0 && rc != -EEXIST) {
                snprintf(err, errlen, "cannot create cookie file %s: %s", path, strerror(-rc));
                return -ENOENT;
            }
        }
        file = path;
    }
    return load_file(file, out, err, errlen);
}
