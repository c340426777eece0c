/* store_helper.h - running a test scenario against a fresh store inside a libcnode
 * process. The backend comes from the environment: DATABASE_URL=postgres://... runs
 * on PostgreSQL (the schema is dropped and recreated first), otherwise SQLite in a
 * temporary directory. tests/integ/cms_store.sh runs the store tests both ways.
 */
#ifndef CMS_TEST_STORE_HELPER_H
#define CMS_TEST_STORE_HELPER_H

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/node.h"
#include "cnode/proc.h"
#include "store.h"
#include "test.h"

typedef void (*store_scenario_fn)(cms_store_t *s, void *arg);

typedef struct store_run {
    store_scenario_fn fn;
    void *arg;
    char dir[64];
    const char *url;
} store_run_t;

static void helper_rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Drop everything in PostgreSQL's public schema: each test starts empty. */
static void helper_pg_reset(const char *url)
{
    cms_conn_t *c = NULL;
    char err[CMS_ERR_LEN];
    if (cms_backend_pg.open(url, 0, &c, err) != 0)
        test__fail(__FILE__, __LINE__, "connect %s: %s", url, err);
    ASSERT_EQ(cms_backend_pg.exec_script(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
                                         err), 0);
    cms_backend_pg.close(c);
}

static void helper_proc(void *arg)
{
    store_run_t *r = arg;
    cms_store_t *s = NULL;
    char err[CMS_ERR_LEN] = "";
    if (r->url)
        helper_pg_reset(r->url);
    int rc = cms_store_open(r->url ? r->url : r->dir, 0, &s, err);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "open: %s", err);
    rc = cms_store_migrate(s, NULL, NULL, err);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "migrate: %s", err);
    r->fn(s, r->arg);
    cms_store_close(s);
}

/* The backend under test, for messages: "sqlite" or "postgres". */
static inline const char *helper_backend(void)
{
    const char *u = getenv("DATABASE_URL");
    return u && strncmp(u, "postgres", 8) == 0 ? "postgres" : "sqlite";
}

__attribute__((unused)) static void run_store(store_scenario_fn fn, void *arg)
{
    store_run_t r = { fn, arg, "/tmp/cms-test.XXXXXX", NULL };
    const char *u = getenv("DATABASE_URL");
    cn_node_t *node;
    if (u && strncmp(u, "postgres", 8) == 0)
        r.url = u;
    else
        ASSERT_NOT_NULL(mkdtemp(r.dir));
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    /* Store users run on their own stacks: see CMS_STORE_SPAWN in store.h. */
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    ASSERT_EQ(cn_spawn(node, helper_proc, &r, &own, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node);
    if (r.url == NULL)
        helper_rm_dir(r.dir);
}

#endif /* CMS_TEST_STORE_HELPER_H */
