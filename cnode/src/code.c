/* code.c - loading gen_server modules from shared objects, hot upgrades, and the
 * node's `cn_code` server (contract in cnode/code.h).
 *
 * Reading order: the table of loaded objects and the checks a file must pass
 * (do_load, on the blocking pool), the per-node "current module by name", the
 * upgrade sequence (load, suspend, change, resume), then the `cn_code` server.
 *
 * Why the table of loaded objects is process-wide (the one exception to "all
 * state hangs off the node"): dlopen handles belong to the process, and glibc
 * keys loaded objects by path, so two nodes in one process share them anyway.
 * Entries are never removed and objects never dlclose'd: after an upgrade, old
 * code may still run in processes the old version spawned (a worker, a follower),
 * exit hooks registered by it, or function pointers its state holds (a table of
 * model operations); nothing tells us when the last of those is gone, and a
 * dlclose under one of them is a jump into unmapped memory. The price is the
 * mapping of every distinct file loaded, until the process exits. A file that
 * fails the checks after dlopen is closed at once: none of its code has run
 * except constructors, and nothing points into it.
 */
#include "cnode/code.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cnode_int.h"

#define CODE_SERVER "cn_code"

/* ---------------------------------------------------------------------------------
 * Loaded objects (process-wide)
 * ------------------------------------------------------------------------------ */

typedef struct loaded {
    char *path;              /* resolved (realpath) */
    dev_t dev;
    ino_t ino;
    void *handle;            /* never dlclose'd: see the file comment */
    const cn_module_t *mod;  /* inside the object */
} loaded_t;

static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;
static loaded_t *tab;
static long ntab, captab;

const cn_module_t *cn__code_module_at(long index)
{
    const cn_module_t *m = NULL;
    pthread_mutex_lock(&tab_lock);
    if (index >= 0 && index < ntab)
        m = tab[index].mod;
    pthread_mutex_unlock(&tab_lock);
    return m;
}

static long index_of(const cn_module_t *mod)
{
    long k = -1;
    pthread_mutex_lock(&tab_lock);
    for (long i = 0; i < ntab && k < 0; i++)
        if (tab[i].mod == mod)
            k = i;
    pthread_mutex_unlock(&tab_lock);
    return k;
}

typedef struct load_job {
    const char *path;
    const char *dir;         /* NULL: no directory restriction */
    int rc;
    const cn_module_t *mod;
    char err[CN_CODE_ERR_LEN];
} load_job_t;

static int fail(load_job_t *j, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(load_job_t *j, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof j->err, fmt, ap);
    va_end(ap);
    j->rc = rc;
    return rc;
}

/* Owned by root or by us, writable by nobody else. */
static int check_owner(load_job_t *j, const char *what, const char *p, const struct stat *st)
{
    uid_t me = geteuid();
    if (st->st_uid != 0 && st->st_uid != me)
        return fail(j, -EPERM, "%s %s is owned by uid %u, neither root nor this node's user (uid %u)",
                    what, p, (unsigned)st->st_uid, (unsigned)me);
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return fail(j, -EPERM, "%s %s is writable by group or others (mode %04o)", what, p,
                    (unsigned)(st->st_mode & 07777));
    return 0;
}

/* Entry point of a module file: resolve, check, dlopen, validate, record. Runs
 * on the blocking pool (file system work and dlopen may take milliseconds). */
static void do_load(void *arg)
{
    load_job_t *j = arg;
    char *real = NULL, *rdir = NULL, *parent = NULL;
    void *h = NULL;
    struct stat st, dst;

    j->rc = 0;
    if (j->path == NULL || j->path[0] != '/') {
        fail(j, -EINVAL, "%s: not an absolute path (the file is opened on the node)",
             j->path ? j->path : "(null)");
        goto out;
    }
    if ((real = realpath(j->path, NULL)) == NULL) {
        fail(j, -errno, "%s: %s", j->path, strerror(errno));
        goto out;
    }
    if (j->dir && j->dir[0]) {
        size_t n;
        if ((rdir = realpath(j->dir, NULL)) == NULL) {
            fail(j, -EPERM, "code directory %s: %s", j->dir, strerror(errno));
            goto out;
        }
        n = strlen(rdir);
        if (strncmp(real, rdir, n) != 0 || real[n] != '/') {
            fail(j, -EPERM, "%s is outside the code directory %s", real, rdir);
            goto out;
        }
    }
    if (stat(real, &st) < 0) {
        fail(j, -errno, "%s: %s", real, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(j, -EPERM, "%s is not a regular file", real);
        goto out;
    }
    if (check_owner(j, "file", real, &st) < 0)
        goto out;
    parent = strdup(real);
    if (parent == NULL) {
        fail(j, -ENOMEM, "out of memory");
        goto out;
    }
    *strrchr(parent, '/') = '\0';
    if (stat(parent[0] ? parent : "/", &dst) < 0) {
        fail(j, -errno, "%s: %s", parent, strerror(errno));
        goto out;
    }
    if (check_owner(j, "directory", parent[0] ? parent : "/", &dst) < 0)
        goto out;

    pthread_mutex_lock(&tab_lock);
    for (long i = 0; i < ntab; i++) {
        if (tab[i].dev == st.st_dev && tab[i].ino == st.st_ino) {
            j->mod = tab[i].mod; /* the same file, loaded before */
            pthread_mutex_unlock(&tab_lock);
            goto out;
        }
        if (strcmp(tab[i].path, real) == 0) {
            pthread_mutex_unlock(&tab_lock);
            fail(j, -ESTALE,
                 "%s was replaced since it was loaded (new inode); the dynamic loader "
                 "would return the copy loaded first: install each build under its own "
                 "file name", real);
            goto out;
        }
    }
    if (ntab == captab) {
        long cap = captab ? captab * 2 : 8;
        loaded_t *t = realloc(tab, (size_t)cap * sizeof *t);
        if (t == NULL) {
            pthread_mutex_unlock(&tab_lock);
            fail(j, -ENOMEM, "out of memory");
            goto out;
        }
        tab = t;
        captab = cap;
    }
    /* RTLD_NOW: an unresolved symbol fails here, not at some later call.
     * RTLD_LOCAL: its symbols do not serve the objects loaded after it. */
    dlerror();
    h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *e = dlerror();
        pthread_mutex_unlock(&tab_lock);
        fail(j, -ENOEXEC, "%s", e ? e : "dlopen failed");
        goto out;
    }
    const cn_module_t *(*entry)(void);
    *(void **)&entry = dlsym(h, CN_MODULE_SYMBOL);
    const cn_module_t *m = entry ? entry() : NULL;
    if (entry == NULL)
        fail(j, -ENOEXEC, "%s does not export %s(): not a libcnode module", real,
             CN_MODULE_SYMBOL);
    else if (m == NULL)
        fail(j, -EINVAL, "%s: %s() returned NULL", real, CN_MODULE_SYMBOL);
    else if (m->abi != CN_MODULE_ABI || m->size < sizeof(cn_module_t))
        fail(j, -EINVAL,
             "%s: module ABI %u (descriptor of %u bytes); this node speaks ABI %u: rebuild "
             "the module against this libcnode", real, m->abi, m->size, CN_MODULE_ABI);
    else if (m->name == NULL || m->name[0] == '\0' || m->vsn == NULL || m->vsn[0] == '\0' ||
             m->callbacks == NULL || strlen(m->vsn) >= 64 || strlen(m->name) >= 64)
        fail(j, -EINVAL, "%s: the module descriptor lacks a name, a vsn (under 64 bytes) "
             "or callbacks", real);
    if (j->rc < 0) {
        dlclose(h); /* nothing of it ran but constructors; nothing points into it */
        pthread_mutex_unlock(&tab_lock);
        goto out;
    }
    tab[ntab] = (loaded_t){ real, st.st_dev, st.st_ino, h, m };
    ntab++;
    real = NULL; /* the table's now */
    j->mod = m;
    pthread_mutex_unlock(&tab_lock);
out:
    free(real);
    free(rdir);
    free(parent);
}

/* ---------------------------------------------------------------------------------
 * Per node: the code directory and the current module of each name
 * ------------------------------------------------------------------------------ */

typedef struct cn__code {
    char *dir;                   /* NULL: $ONEBLOG_CODE_DIR at load time */
    const cn_module_t **cur;
    size_t ncur, capcur;
} cn__code_t;

static cn__code_t *node_code(cn_node_t *n)
{
    if (n->code == NULL)
        n->code = cn__calloc(1, sizeof(cn__code_t));
    return n->code;
}

void cn__code_free(cn_node_t *n)
{
    cn__code_t *c = n->code;
    if (c == NULL)
        return;
    cn__free(c->dir);
    cn__free(c->cur);
    cn__free(c);
    n->code = NULL;
}

const cn_module_t *cn_code_current(const char *name)
{
    cn_node_t *n = cn__cur_node;
    cn__code_t *c = n ? n->code : NULL;
    if (c == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < c->ncur; i++)
        if (strcmp(c->cur[i]->name, name) == 0)
            return c->cur[i];
    return NULL;
}

int cn_code_set_current(const cn_module_t *mod)
{
    cn_node_t *n = cn__cur_node;
    cn__code_t *c;
    if (n == NULL || mod == NULL || mod->name == NULL)
        return -EINVAL;
    if ((c = node_code(n)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < c->ncur; i++)
        if (strcmp(c->cur[i]->name, mod->name) == 0) {
            c->cur[i] = mod;
            return 0;
        }
    if (c->ncur == c->capcur) {
        size_t cap = c->capcur ? c->capcur * 2 : 4;
        const cn_module_t **t = cn__realloc(c->cur, cap * sizeof *t);
        if (t == NULL)
            return -ENOMEM;
        c->cur = t;
        c->capcur = cap;
    }
    c->cur[c->ncur++] = mod;
    return 0;
}

int cn_code_load(const char *path, const cn_module_t **out, char *err, size_t errlen)
{
    cn_node_t *n = cn__cur_node;
    cn__code_t *c = n ? n->code : NULL;
    load_job_t j = { path, c && c->dir ? c->dir : getenv("ONEBLOG_CODE_DIR"), 0, NULL, "" };
    int rc = 0;
    /* On the pool from a process (the scheduler keeps running); inline before the
     * node runs. A module's constructors therefore run on a pool thread: modules
     * must not do node work in them. */
    if (n && n->current)
        rc = cn_blocking(do_load, &j);
    else
        do_load(&j);
    if (rc == 0)
        rc = j.rc;
    if (rc < 0 && j.err[0] == '\0')
        snprintf(j.err, sizeof j.err, "%s: %s", path ? path : "(null)", cn_strerror(rc));
    if (err && errlen)
        snprintf(err, errlen, "%s", rc < 0 ? j.err : "");
    if (rc == 0)
        *out = j.mod;
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Upgrade: load, suspend, change, resume
 * ------------------------------------------------------------------------------ */

static void copy_bin(const char *buf, int *i, char *out, size_t outlen)
{
    int type, size;
    long len = 0;
    out[0] = '\0';
    if (ei_get_type(buf, i, &type, &size) == 0 && type == ERL_BINARY_EXT &&
        (size_t)size < outlen && ei_decode_binary(buf, i, out, &len) == 0)
        out[len] = '\0';
    else
        ei_skip_term(buf, i);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int cn_code_upgrade(const char *name, const char *path, ei_x_buff *extra, int64_t timeout_ms,
                    cn_code_result_t *res)
{
    const cn_module_t *mod;
    cn_pid_t pid;
    cn_msg_t *m = NULL;
    cn_term_t r;
    ei_x_buff x = { NULL, 0, 0 };
    int rc;

    memset(res, 0, sizeof *res);
    if ((rc = cn_code_load(path, &mod, res->err, sizeof res->err)) < 0)
        goto out;
    if (name == NULL || cn_whereis(name, &pid) < 0) {
        snprintf(res->err, sizeof res->err, "no process is registered as '%s' on this node",
                 name ? name : "(null)");
        rc = -ESRCH;
        goto out;
    }
    if (cn_pid_eq(pid, cn_self())) {
        snprintf(res->err, sizeof res->err, "a server cannot upgrade itself");
        rc = -EINVAL;
        goto out;
    }
    /* Suspended, the server finishes the message in hand and then takes only
     * system messages: calls arriving meanwhile wait in its mailbox, in order. */
    if ((rc = cn_gen_server_suspend(cn_dest_pid(pid), timeout_ms)) < 0) {
        snprintf(res->err, sizeof res->err, "suspending '%s': %s", name, cn_strerror(rc));
        /* A server busy past the timeout still takes the suspend later, and we
         * (alive, so its monitor never fires) would never resume it: queue a
         * resume behind the suspend. Delivered whether or not we wait for it. */
        if (rc != -ESRCH)
            cn_gen_server_resume(cn_dest_pid(pid), 0);
        goto out;
    }
    int64_t t0 = mono_us();
    if (cn_x_new(&x) < 0) {
        rc = -ENOMEM;
        snprintf(res->err, sizeof res->err, "out of memory");
    } else {
        ei_x_encode_tuple_header(&x, 3);
        ei_x_encode_atom(&x, "$cn_change_module");
        ei_x_encode_long(&x, index_of(mod));
        if (extra && extra->buff && extra->index > 1)
            ei_x_append_buf(&x, extra->buff + 1, extra->index - 1);
        else
            ei_x_encode_empty_list(&x);
        rc = cn__sys_call(cn_dest_pid(pid), &x, timeout_ms, &m, &r);
    }
    if (rc == 0) {
        int i = r.index, arity;
        char tag[MAXATOMLEN_UTF8];
        if (ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 3 &&
            ei_decode_atom(m->buf, &i, tag) == 0 && strcmp(tag, "ok") == 0) {
            copy_bin(m->buf, &i, res->old_vsn, sizeof res->old_vsn);
            copy_bin(m->buf, &i, res->new_vsn, sizeof res->new_vsn);
        } else {
            i = r.index;
            ei_decode_tuple_header(m->buf, &i, &arity);
            ei_skip_term(m->buf, &i);
            copy_bin(m->buf, &i, res->err, sizeof res->err);
            if (res->err[0] == '\0')
                snprintf(res->err, sizeof res->err, "unexpected reply from '%s'", name);
            rc = -ECANCELED;
        }
        cn_msg_free(m);
    } else if (res->err[0] == '\0') {
        /* A code_change still running when we gave up may yet complete: the
         * resume below is queued behind it either way. */
        snprintf(res->err, sizeof res->err,
                 "changing the code of '%s': %s (a late code_change may still complete; "
                 "check which version runs)", name, cn_strerror(rc));
    }
    /* Resume on every path that suspended. The message is delivered even if we
     * stop waiting for its answer, so the server never stays suspended. */
    int rrc = cn_gen_server_resume(cn_dest_pid(pid), timeout_ms);
    res->suspended_us = mono_us() - t0;
    if (rrc < 0 && rc == 0) {
        rc = rrc;
        snprintf(res->err, sizeof res->err, "resuming '%s': %s", name, cn_strerror(rrc));
    }
    if (rc == 0 && res->new_vsn[0])
        cn_code_set_current(mod); /* a restart by the supervisor keeps the new version */
out:
    if (extra) {
        ei_x_free(extra);
        extra->buff = NULL;
        extra->index = extra->buffsz = 0;
    }
    return rc;
}

int cn_code_which(const char *name, char *module, size_t mlen, char *vsn, size_t vlen,
                  int64_t timeout_ms)
{
    cn_pid_t pid;
    cn_msg_t *m;
    cn_term_t r;
    ei_x_buff x;
    int rc, i, arity;
    char tag[MAXATOMLEN_UTF8];
    if (name == NULL || cn_whereis(name, &pid) < 0)
        return -ESRCH;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    ei_x_encode_atom(&x, "$cn_which");
    if ((rc = cn__sys_call(cn_dest_pid(pid), &x, timeout_ms, &m, &r)) < 0)
        return rc;
    i = r.index;
    rc = -EINVAL;
    if (ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 3 &&
        ei_decode_atom(m->buf, &i, tag) == 0 && strcmp(tag, "ok") == 0) {
        copy_bin(m->buf, &i, module, mlen);
        copy_bin(m->buf, &i, vsn, vlen);
        rc = 0;
    }
    cn_msg_free(m);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * The `cn_code` server
 * ------------------------------------------------------------------------------ */

#define UPGRADE_STEP_MS 30000 /* each of suspend, code_change, resume */

/* A binary or an atom into out; false if neither or too long. */
static bool decode_text(const char *buf, int *i, char *out, size_t outlen)
{
    int type, size;
    long len;
    if (ei_get_type(buf, i, &type, &size) < 0 || (size_t)size >= outlen)
        return false;
    if (type == ERL_BINARY_EXT) {
        if (ei_decode_binary(buf, i, out, &len) < 0)
            return false;
        out[len] = '\0';
        return true;
    }
    return ei_decode_atom(buf, i, out) == 0;
}

static void reply_error(ei_x_buff *reply, const char *text)
{
    ei_x_encode_tuple_header(reply, 2);
    ei_x_encode_atom(reply, "error");
    ei_x_encode_binary(reply, text, (long)strlen(text));
}

static int on_upgrade(const char *buf, int i, int len, int arity, ei_x_buff *reply)
{
    char name[256], path[PATH_MAX];
    if (!decode_text(buf, &i, name, sizeof name) || !decode_text(buf, &i, path, sizeof path)) {
        reply_error(reply, "expected {upgrade, Name, Path[, Extra]} with binaries");
        return CN_GS_CONTINUE;
    }
    ei_x_buff extra = { NULL, 0, 0 };
    if (arity == 4) {
        if (cn_x_new(&extra) < 0 || cn_x_append_term(&extra, (cn_term_t){ buf, i, len }) < 0) {
            ei_x_free(&extra);
            reply_error(reply, "out of memory");
            return CN_GS_CONTINUE;
        }
    }
    cn_code_result_t res;
    int rc = cn_code_upgrade(name, path, arity == 4 ? &extra : NULL, UPGRADE_STEP_MS, &res);
    if (rc < 0) {
        reply_error(reply, res.err);
        return CN_GS_CONTINUE;
    }
    ei_x_encode_tuple_header(reply, 4);
    ei_x_encode_atom(reply, "ok");
    ei_x_encode_binary(reply, res.old_vsn, (long)strlen(res.old_vsn));
    ei_x_encode_binary(reply, res.new_vsn, (long)strlen(res.new_vsn));
    ei_x_encode_longlong(reply, res.suspended_us);
    return CN_GS_CONTINUE;
}

static int code_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state;
    (void)from;
    const char *buf = req.buf;
    int i = req.index, arity;
    char tag[MAXATOMLEN_UTF8];
    if (cn_decode_atom_is(buf, &i, "modules")) {
        pthread_mutex_lock(&tab_lock);
        long n = ntab;
        ei_x_encode_tuple_header(reply, 2);
        ei_x_encode_atom(reply, "ok");
        if (n > 0)
            ei_x_encode_list_header(reply, n);
        for (long k = 0; k < n; k++) {
            ei_x_encode_tuple_header(reply, 3);
            ei_x_encode_binary(reply, tab[k].mod->name, (long)strlen(tab[k].mod->name));
            ei_x_encode_binary(reply, tab[k].mod->vsn, (long)strlen(tab[k].mod->vsn));
            ei_x_encode_binary(reply, tab[k].path, (long)strlen(tab[k].path));
        }
        pthread_mutex_unlock(&tab_lock);
        ei_x_encode_empty_list(reply);
        return CN_GS_CONTINUE;
    }
    i = req.index;
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || ei_decode_atom(buf, &i, tag) < 0) {
        reply_error(reply, "unknown request");
        return CN_GS_CONTINUE;
    }
    if (strcmp(tag, "upgrade") == 0 && (arity == 3 || arity == 4))
        return on_upgrade(buf, i, req.len, arity, reply);
    if (strcmp(tag, "which") == 0 && arity == 2) {
        char name[256], mod[64], vsn[64], err[320];
        if (!decode_text(buf, &i, name, sizeof name)) {
            reply_error(reply, "expected {which, Name}");
            return CN_GS_CONTINUE;
        }
        int rc = cn_code_which(name, mod, sizeof mod, vsn, sizeof vsn, UPGRADE_STEP_MS);
        if (rc < 0) {
            snprintf(err, sizeof err, "%s: %s", name,
                     rc == -ESRCH    ? "no such registered process"
                     : rc == -EINVAL ? "not started from a module"
                                     : cn_strerror(rc));
            reply_error(reply, err);
            return CN_GS_CONTINUE;
        }
        ei_x_encode_tuple_header(reply, 3);
        ei_x_encode_atom(reply, "ok");
        ei_x_encode_binary(reply, mod, (long)strlen(mod));
        ei_x_encode_binary(reply, vsn, (long)strlen(vsn));
        return CN_GS_CONTINUE;
    }
    reply_error(reply, "unknown request");
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t code_cb = {
    .handle_call = code_call,
};

int cn_code_start(cn_node_t *node, const cn_code_opts_t *opts)
{
    if (node == NULL)
        return -EINVAL;
    cn_node_t *prev = cn__cur_node;
    cn__cur_node = node;
    cn__code_t *c = node_code(node);
    cn__cur_node = prev;
    if (c == NULL)
        return -ENOMEM;
    const char *dir = opts && opts->dir ? opts->dir : getenv("ONEBLOG_CODE_DIR");
    if (dir && dir[0]) {
        char *d = cn__malloc(strlen(dir) + 1);
        if (d == NULL)
            return -ENOMEM;
        strcpy(d, dir);
        cn__free(c->dir);
        c->dir = d;
    }
    cn_gen_server_opts_t go = { .name = CODE_SERVER };
    /* Own stack: an upgrade parks in calls while other processes run. */
    go.spawn.flags = CN_SPAWN_OWN_STACK;
    return cn_gen_server_start(node, &code_cb, NULL, &go, NULL);
}
