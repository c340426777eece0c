/* main.c - oneblog-cms: arguments, configuration, start-up and the subcommands.
 *
 *   oneblog-cms init --email E --name N [--password-stdin]   database + owner user
 *   oneblog-cms migrate                                      apply schema migrations
 *   oneblog-cms user add --email E --name N --role R [--password-stdin]
 *   oneblog-cms import DIR | import --ghost FILE             load content
 *   oneblog-cms export [FILE]                                all content as JSON
 *   oneblog-cms api-key add --email E [--name N]             an Admin API key for a user
 *   oneblog-cms serve                                        run the CMS node
 *   oneblog-cms help                                         commands and options
 *
 * Every subcommand runs inside a libcnode process (the store parks its caller
 * while the database works), on a node made here. Options come from the
 * environment (config.c). Subcommands are one static table.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "admin.h"
#include "cms.h"
#include "cnode/cluster.h"
#include "cnode/code.h"
#include "cnode/dist.h"
#include "cnode/proc.h"
#include "cnode/supervisor.h"
#include "cnode/telemetry.h"
#include "events/events_server.h"
#include "recs/server.h"
#include "privs.h"
#include "util.h"

typedef struct cli {
    cms_config_t cfg;
    cms_store_t *store;
    int argc;        /* arguments after the subcommand name */
    char **argv;
    int status;      /* the process exit status */
    bool keep_running; /* serve: the node runs on after the handler returns */
} cli_t;

typedef int (*cmd_fn)(cli_t *c);

/* ---------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------ */

/* The value of "--name VALUE" in the arguments, or NULL. */
static const char *arg_value(const cli_t *c, const char *name)
{
    for (int i = 0; i + 1 < c->argc; i++)
        if (strcmp(c->argv[i], name) == 0)
            return c->argv[i + 1];
    return NULL;
}

static bool arg_flag(const cli_t *c, const char *name)
{
    for (int i = 0; i < c->argc; i++)
        if (strcmp(c->argv[i], name) == 0)
            return true;
    return false;
}

/* Read a password from stdin (first line) and hash it; NULL when not asked for. */
static int password_hash(const cli_t *c, char **out)
{
    char line[1024];
    *out = NULL;
    if (!arg_flag(c, "--password-stdin"))
        return 0;
    if (fgets(line, sizeof line, stdin) == NULL) {
        fprintf(stderr, "oneblog-cms: --password-stdin: no password on stdin\n");
        return -EINVAL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (strlen(line) < 10) {
        fprintf(stderr, "oneblog-cms: --password-stdin: at least 10 characters\n");
        return -EINVAL;
    }
    /* The admin's own hashing (the same argon2id parameters for every
     * password), off the scheduler thread. */
    int rc = cms_admin_hash_password(line, out);
    memset(line, 0, sizeof line);
    return rc;
}

static int add_user(cli_t *c, cms_role_t role)
{
    const char *email = arg_value(c, "--email"), *name = arg_value(c, "--name");
    char err[CMS_ERR_LEN] = "";
    cms_user_t u = { 0 };
    if (email == NULL || name == NULL) {
        fprintf(stderr, "oneblog-cms: --email and --name are required\n");
        return -EINVAL;
    }
    int rc = password_hash(c, &u.password_hash);
    if (rc < 0)
        return rc;
    u.email = xstrdup(email);
    u.profile.name = xstrdup(name);
    u.role = role;
    rc = cms_user_add(c->store, &u, cms_time_now(), err);
    if (rc < 0)
        fprintf(stderr, "oneblog-cms: user: %s\n", err);
    else
        printf("user %s <%s> (%s), slug %s\n", name, email, cms_role_name(role),
               u.profile.slug);
    cms_user_clear(&u);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Subcommands
 * ------------------------------------------------------------------------------ */

static int cmd_migrate(cli_t *c)
{
    (void)c; /* the store was migrated when opened; say where it stands */
    printf("schema at version %d (%s)\n", cms_store_latest_version(c->store),
           cms_store_backend(c->store)->name);
    return 0;
}

static int cmd_init(cli_t *c)
{
    int64_t n = 0;
    int rc = cms_user_count(c->store, &n);
    if (rc < 0)
        return rc;
    if (n > 0) {
        printf("already initialised (%lld staff users)\n", (long long)n);
        return 0;
    }
    return add_user(c, CMS_ROLE_OWNER);
}

static int cmd_user(cli_t *c)
{
    cms_role_t role = CMS_ROLE_AUTHOR;
    const char *r = arg_value(c, "--role");
    if (c->argc < 1 || strcmp(c->argv[0], "add") != 0) {
        fprintf(stderr, "usage: oneblog-cms user add --email E --name N --role R\n");
        return -EINVAL;
    }
    if (r && cms_role_parse(r, &role) < 0) {
        fprintf(stderr, "oneblog-cms: --role: '%s' is not owner, administrator, editor, "
                        "author or contributor\n", r);
        return -EINVAL;
    }
    return add_user(c, role);
}

static int print_stats(const char *what, const cms_import_stats_t *st)
{
    printf("%s: %d posts, %d pages, %d new authors, %d tag links, %d skipped (already there)\n",
           what, st->posts, st->pages, st->authors, st->tags, st->skipped);
    return 0;
}

static int cmd_import(cli_t *c)
{
    char err[CMS_ERR_LEN] = "";
    cms_import_stats_t st;
    const char *ghost = arg_value(c, "--ghost");
    int rc;
    if (ghost)
        rc = cms_import_ghost(c->store, ghost, &st, err);
    else if (c->argc == 1 && c->argv[0][0] != '-')
        rc = cms_import_dir(c->store, c->argv[0], &st, err);
    else {
        fprintf(stderr, "usage: oneblog-cms import DIR | import --ghost FILE\n");
        return -EINVAL;
    }
    if (rc < 0) {
        fprintf(stderr, "oneblog-cms: import: %s\n", err);
        return rc;
    }
    return print_stats(ghost ? ghost : c->argv[0], &st);
}

static int cmd_export(cli_t *c)
{
    char err[CMS_ERR_LEN] = "";
    int rc = cms_export_json(c->store, c->argc > 0 ? c->argv[0] : "-", err);
    if (rc < 0)
        fprintf(stderr, "oneblog-cms: %s\n", err);
    return rc;
}

static int cmd_api_key(cli_t *c)
{
    const char *email = arg_value(c, "--email"), *name = arg_value(c, "--name");
    char err[CMS_ERR_LEN] = "", *key = NULL;
    cms_user_t u = { 0 };
    if (c->argc < 1 || strcmp(c->argv[0], "add") != 0 || email == NULL) {
        fprintf(stderr, "usage: oneblog-cms api-key add --email E [--name N]\n");
        return -EINVAL;
    }
    int rc = cms_user_by_email(c->store, email, &u, err);
    if (rc == 0)
        rc = cms_admin_apikey_create(c->store, name ? name : "cli", u.id, &key, err);
    if (rc < 0) {
        fprintf(stderr, "oneblog-cms: api-key: %s\n", err);
    } else {
        /* The key alone on stdout (for scripts); it is not stored and not shown again. */
        fprintf(stderr, "admin API key for %s (%s); it is shown once:\n", email,
                cms_role_name(u.role));
        printf("%s\n", key);
    }
    free(key);
    cms_user_clear(&u);
    return rc;
}

/* ---- serve ----------------------------------------------------------------------- */

/* The supervised `cms` server's options: they must outlive it, so not on a stack. */
static cms_rpc_opts_t serve_rpc;
static cn_pid_t serve_sup;
static cli_t *serve_cli;
static cms_admin_t *serve_admin;
static int serve_sigfd = -1;
/* `events` and `recs` beside `cms` (DESIGN.md: recs on CMS nodes; with the file
 * backend the CMS node owns the event log). ONEBLOG_EVENTS=off / ONEBLOG_RECS=off
 * leave them out (another node runs them: oneblog-recs, or the log is elsewhere). */
static events_server_opts_t serve_events;
static recs_server_opts_t serve_recs;
static double serve_recs_params[RECS_VERSIONS + 1][RECS_MAX_PARAMS];
static char *serve_events_url, *serve_snapshots;

/* Join the cluster registry as `service` (every incarnation: a supervisor
 * restart brings a new pid). Before the cluster is started this is -ENOTCONN
 * and cmd_serve joins the first pids itself. */
static void join_service(const char *service, cn_pid_t pid)
{
    cn_cluster_join(service, pid, serve_cli ? serve_cli->cfg.version : "");
}

static int start_events_child(void *arg, cn_pid_t *out)
{
    char err[EV_ERR_LEN] = "", note[sizeof ((ev_store_t *)0)->io_note] = "";
    (void)arg;
    serve_events.link = true;
    serve_events.io_note = note;
    serve_events.io_note_len = sizeof note;
    int rc = events_server_start(cn_node_self(), &serve_events, out, err, sizeof err);
    serve_events.io_note = NULL;
    if (rc < 0)
        cms_log(CMS_LOG_ERROR, "serve", "events: %s", err);
    else
        join_service("events", *out);
    if (rc == 0 && note[0])
        cms_log(CMS_LOG_INFO, "serve", "events: appends %s", note);
    return rc;
}

static int start_recs_child(void *arg, cn_pid_t *out)
{
    char err[256] = "";
    (void)arg;
    serve_recs.link = true;
    int rc = recs_server_start(&serve_recs, out, err, sizeof err);
    if (rc < 0)
        cms_log(CMS_LOG_ERROR, "serve", "recs: %s", err);
    else
        join_service("recs", *out);
    return rc;
}

static bool env_off(const char *name)
{
    const char *v = getenv(name);
    return v && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0);
}

static int start_cms_child(void *arg, cn_pid_t *out)
{
    cms_rpc_opts_t *o = arg;
    o->link = true;
    int rc = cms_rpc_start(o, out);
    /* Announce every incarnation of `cms` in the cluster registry, so that client
     * nodes find it by service name (the registry drops it when it exits). Before
     * the cluster is started (the first start) this is -ENOTCONN: cmd_serve joins
     * that first pid itself. */
    if (rc == 0)
        cn_cluster_join("cms", *out, serve_cli ? serve_cli->cfg.version : "");
    return rc;
}

/* Waits for SIGINT/SIGTERM (blocked in main and read through a signalfd), then
 * drains and stops: `cms` first leaves the cluster registry, so that clients stop
 * picking this node (the leave reaches every peer over its connection at once),
 * and keeps answering for ONEBLOG_SHUTDOWN_DRAIN_MS the calls already sent to it;
 * then the supervision tree stops and the store and the node close. A rolling
 * restart (a deploy, a cookie rotation) thus fails no reader call. */
static void signal_watcher(void *arg)
{
    (void)arg;
    struct signalfd_siginfo si;
    while (cn_wait_fd(serve_sigfd, CN_READABLE, CN_INFINITY) > 0) {
        if (read(serve_sigfd, &si, sizeof si) == (ssize_t)sizeof si)
            break;
    }
    cms_log(CMS_LOG_INFO, "serve", "signal %u: leaving the cluster, draining for %d ms",
            si.ssi_signo, serve_cli->cfg.drain_ms);
    cn_pid_t cms_pid;
    if (cn_whereis("cms", &cms_pid) == 0 && cn_cluster_leave("cms", cms_pid) == 0 &&
        serve_cli->cfg.drain_ms > 0)
        cn_sleep(serve_cli->cfg.drain_ms);
    cms_log(CMS_LOG_INFO, "serve", "shutting down");
    cms_admin_stop(serve_admin); /* its handlers use the store */
    cn_gen_server_stop(cn_dest_pid(serve_sup), "shutdown", 10000);
    cn_fd_close(serve_sigfd);
    cms_store_close(serve_cli->store);
    serve_cli->store = NULL;
    cn_telemetry_stop(cn_node_self(), 2000); /* flush the spans still queued */
    cn_node_stop(cn_node_self());
}

static int cmd_serve(cli_t *c)
{
    char err[CMS_ERR_LEN] = "";
    int64_t n = 0;
    int rc;
    if (c->cfg.demo && cms_post_count_all(c->store, &n) == 0 && n == 0) {
        cms_import_stats_t st;
        if ((rc = cms_import_dir(c->store, c->cfg.demo_dir, &st, err)) < 0)
            cms_log(CMS_LOG_WARN, "serve", "demo content: %s", err);
        else
            cms_log(CMS_LOG_INFO, "serve", "empty database: loaded %d demo posts and %d pages "
                    "from %s", st.posts, st.pages, c->cfg.demo_dir);
    }
    serve_rpc = (cms_rpc_opts_t){ .store = c->store, .fault_error_pct = c->cfg.fault_error_pct,
                                  .fault_delay_ms = c->cfg.fault_delay_ms };
    if (c->cfg.fault_error_pct || c->cfg.fault_delay_ms)
        cms_log(CMS_LOG_WARN, "serve", "TEST ONLY fault injection on: %d%% of reader calls "
                "fail, %d ms added to each", c->cfg.fault_error_pct, c->cfg.fault_delay_ms);
    serve_cli = c; /* start_cms_child reads the version */
    cn_child_spec_t children[3] = {
        { .id = "cms", .start = start_cms_child, .arg = &serve_rpc, .shutdown_ms = 5000 },
    };
    int nchildren = 1;
    /* The event log: EVENTS_URL, by default file:$ONEBLOG_DATA_DIR/events (this
     * node owns it; client nodes cast their page views here in batches). With
     * MongoDB or PostgreSQL every node may run its own `events`. */
    if (!env_off("ONEBLOG_EVENTS")) {
        const char *url = getenv("EVENTS_URL");
        buf_t b = BUF_INIT;
        if (url && *url)
            buf_printf(&b, "%s", url);
        else
            buf_printf(&b, "file:%s/events", c->cfg.data_dir);
        serve_events_url = buf_take(&b);
        serve_events = (events_server_opts_t){ .url = serve_events_url };
        children[nchildren++] = (cn_child_spec_t){ .id = "events", .start = start_events_child,
                                                   .shutdown_ms = 5000 };
    }
    /* `recs` follows the same log and calls this node's `cms` (cms_node NULL). */
    if (!env_off("ONEBLOG_RECS")) {
        if ((rc = recs_server_opts_from_env(&serve_recs, serve_recs_params, err, sizeof err)) < 0) {
            fprintf(stderr, "oneblog-cms: %s\n", err);
            return rc;
        }
        serve_recs.cms_node = NULL;
        serve_recs.events_url = serve_events_url ? serve_events_url : getenv("EVENTS_URL");
        if (serve_recs.snapshot_dir == NULL) {
            buf_t b = BUF_INIT;
            buf_printf(&b, "%s/recs/snapshots", c->cfg.data_dir);
            serve_recs.snapshot_dir = serve_snapshots = buf_take(&b);
        }
        children[nchildren++] = (cn_child_spec_t){ .id = "recs", .start = start_recs_child,
                                                   .shutdown_ms = 5000 };
    }
    /* The code server (`cn_code`), for hot upgrades of `recs` (docs/hot-upgrade.md). */
    if (!env_off("ONEBLOG_RECS") && (rc = cn_code_start(cn_node_self(), NULL)) < 0) {
        fprintf(stderr, "oneblog-cms: code server: %s\n", cn_strerror(rc));
        return rc;
    }
    cn_sup_flags_t flags = { .strategy = CN_ONE_FOR_ONE, .intensity = 5, .period_s = 10 };
    if ((rc = cn_supervisor_start(cn_node_self(), &flags, children, nchildren, NULL,
                                  &serve_sup)) < 0) {
        fprintf(stderr, "oneblog-cms: starting `cms`: %s\n", cn_strerror(rc));
        return rc;
    }
    if (c->cfg.dist) {
        cn_dist_opts_t d;
        cn_dist_opts_from_env(&d, 0, NULL);
        d.node_name = c->cfg.node_name;
        if (*c->cfg.cookie)
            d.cookie = c->cfg.cookie;
        d.tls = c->cfg.dist_tls;
        d.tls_cert = c->cfg.dist_tls_cert;
        d.tls_key = c->cfg.dist_tls_key;
        d.tls_ca = c->cfg.dist_tls_ca;
        if ((rc = cn_dist_start(cn_node_self(), &d)) < 0) {
            fprintf(stderr, "oneblog-cms: distribution: %s\n", cn_strerror(rc));
            return rc;
        }
        /* Join the cluster (ONEBLOG_CLUSTER_*, a static list by default, which may
         * be empty: client nodes connect to us) and register `cms` as a service. */
        cn_cluster_opts_t co;
        cn_pid_t cms_pid;
        if ((rc = cn_cluster_opts_from_env(&co)) < 0 ||
            (rc = cn_cluster_start(cn_node_self(), &co)) < 0) {
            fprintf(stderr, "oneblog-cms: cluster: %s\n", cn_strerror(rc));
            return rc;
        }
        if (cn_whereis("cms", &cms_pid) == 0)
            cn_cluster_join("cms", cms_pid, c->cfg.version);
        if (cn_whereis("events", &cms_pid) == 0)
            join_service("events", cms_pid);
        if (cn_whereis("recs", &cms_pid) == 0)
            join_service("recs", cms_pid);
    }
    /* Telemetry from the environment (docs/observability.md): metrics always,
     * /metrics on ONEBLOG_METRICS_ADDR, traces when an OTLP endpoint is set. */
    if ((rc = cn_telemetry_start(cn_node_self(), NULL)) < 0) {
        fprintf(stderr, "oneblog-cms: telemetry: %s\n", cn_strerror(rc));
        return rc;
    }
    /* The admin (cms/admin.h). If it cannot start (its port is taken), the node
     * still serves `cms` to readers: the error is logged and the admin is off. */
    if (c->cfg.admin) {
        cms_admin_opts_t ao = { .store = c->store, .host = c->cfg.admin_host,
                                .port = c->cfg.admin_port, .dir = c->cfg.admin_dir,
                                .secure_cookie = c->cfg.admin_secure_cookie };
        if (cms_admin_start(&ao, &serve_admin, err) < 0)
            cms_log(CMS_LOG_ERROR, "serve", "the admin is off: %s", err);
    }
    serve_cli = c;
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    if ((rc = cn_spawn(cn_node_self(), signal_watcher, NULL, &own, NULL)) < 0)
        return rc;
    c->keep_running = true;
    cms_post_count_all(c->store, &n);
    printf("oneblog-cms: node %s serving `cms` %s (%s, %lld posts and pages)%s%s%s\n",
           cn_node_name(cn_node_self()), c->cfg.version, cms_store_backend(c->store)->name,
           (long long)n,
           c->cfg.dist ? ", distribution on" : ", local only",
           serve_events_url ? ", `events`" : "", serve_recs.link ? ", `recs`" : "");
    if (serve_admin)
        printf("oneblog-cms: admin on http://%s:%d/admin/\n", c->cfg.admin_host,
               cms_admin_port(serve_admin));
    fflush(stdout);
    return 0;
}

static const struct command {
    const char *name;
    cmd_fn fn;
    const char *usage;
    const char *help;
} commands[] = {
    { "init", cmd_init, "init --email E --name N [--password-stdin]",
      "create the database and the owner user" },
    { "migrate", cmd_migrate, "migrate", "apply the schema migrations" },
    { "user", cmd_user, "user add --email E --name N --role R [--password-stdin]",
      "add a staff user (owner, administrator, editor, author, contributor)" },
    { "import", cmd_import, "import DIR | import --ghost FILE",
      "load Markdown files with YAML front matter, or a Ghost JSON export" },
    { "export", cmd_export, "export [FILE]", "write all content as JSON (default stdout)" },
    { "api-key", cmd_api_key, "api-key add --email E [--name N]",
      "make an Admin API key acting as that user (printed once)" },
    { "serve", cmd_serve, "serve",
      "run the CMS node and the admin (demo content if the database is empty)" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: oneblog-cms COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-58s %s\n", commands[i].usage, commands[i].help);
    fprintf(f, "  %-58s %s\n", "help", "this text and the options");
}

/* ---------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------ */

typedef struct run_arg {
    cli_t *cli;
    const struct command *cmd;
} run_arg_t;

/* The process that opens the store, migrates and runs one subcommand. */
static void run_command(void *arg)
{
    run_arg_t *ra = arg;
    cli_t *c = ra->cli;
    char err[CMS_ERR_LEN] = "";
    int from = 0, to = 0;
    int rc = cms_store_open(cms_config_store_target(&c->cfg), c->cfg.db_pool, &c->store, err);
    if (rc < 0) {
        fprintf(stderr, "oneblog-cms: %s\n", err);
        c->status = 1;
        goto out;
    }
    if ((rc = cms_store_migrate(c->store, &from, &to, err)) < 0) {
        fprintf(stderr, "oneblog-cms: migrate: %s\n", err);
        c->status = 1;
        goto out;
    }
    if (from != to)
        cms_log(CMS_LOG_INFO, "store", "%s: migrated from version %d to %d",
                cms_store_backend(c->store)->name, from, to);
    rc = ra->cmd->fn(c);
    c->status = rc < 0 ? 1 : 0;
out:
    if (!c->keep_running || c->status != 0) {
        cms_store_close(c->store);
        c->store = NULL;
        cn_node_stop(cn_node_self());
    }
}

int main(int argc, char **argv)
{
    char err[CMS_ERR_LEN] = "";
    xmalloc_keep_heap(); /* before the first allocation */
    cli_t *c = xcalloc(1, sizeof(*c));
    const struct command *cmd = NULL;
    cn_node_t *node;
    int rc;

    /* Give root up before anything is opened (common/privs.h). */
    char pmsg[256];
    int prc = privs_drop_root(pmsg, sizeof pmsg);
    if (prc < 0) {
        fprintf(stderr, "oneblog-cms: %s\n", pmsg);
        free(c);
        return 1;
    }
    if (prc != PRIVS_UNCHANGED)
        fprintf(stderr, "oneblog-cms: %s\n", pmsg);

    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        if (argc >= 2 && cms_config_load(&c->cfg, err) == 0) {
            printf("\noptions (environment):\n");
            cms_config_print(&c->cfg);
        }
        cms_config_free(&c->cfg);
        free(c);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "oneblog-cms: unknown command '%s'\n", argv[1]);
        usage(stderr);
        free(c);
        return 2;
    }
    if (cms_config_load(&c->cfg, err) < 0) {
        fprintf(stderr, "oneblog-cms: %s\n", err);
        cms_config_free(&c->cfg);
        free(c);
        return 2;
    }
    c->argc = argc - 2;
    c->argv = argv + 2;
    /* The node's name, as every binary takes it: `serve --name`, else ONEBLOG_NODE,
     * else ONEBLOG_CMS_NODE (the table's option) or its default. (Other commands use
     * --name for a person's name.) */
    const char *name = strcmp(cmd->name, "serve") == 0 ? arg_value(c, "--name") : NULL;
    if (name == NULL && getenv("ONEBLOG_CMS_NODE") == NULL)
        name = getenv("ONEBLOG_NODE");
    if (name && *name) {
        free(c->cfg.node_name);
        c->cfg.node_name = xstrdup(name);
    }

    /* serve reads SIGINT/SIGTERM through a signalfd; block them before any thread
     * (the node's pool) starts, so that every thread inherits the mask. */
    if (strcmp(cmd->name, "serve") == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        serve_sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    }
    cn_node_opts_t no = { .name = c->cfg.node_name };
    if ((rc = cn_node_new(&no, &node)) < 0) {
        fprintf(stderr, "oneblog-cms: ONEBLOG_CMS_NODE: '%s': %s\n", c->cfg.node_name,
                cn_strerror(rc));
        cms_config_free(&c->cfg);
        free(c);
        return 2;
    }
    run_arg_t ra = { c, cmd };
    /* Store users run on their own stacks (see store.h). */
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    if ((rc = cn_spawn(node, run_command, &ra, &own, NULL)) < 0 ||
        (rc = cn_node_run(node)) < 0) {
        fprintf(stderr, "oneblog-cms: node: %s\n", cn_strerror(rc));
        c->status = 1;
    }
    cn_node_free(node);
    cms_admin_free(serve_admin);
    free(serve_events_url);
    free(serve_snapshots);
    cms_store_close(c->store);
    int status = c->status;
    cms_config_free(&c->cfg);
    free(c);
    return status;
}
