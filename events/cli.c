/* cli.c - oneblog-events: read, export and check the event log named by EVENTS_URL.
 *
 *   oneblog-events [--url URL] COMMAND [ARGS]
 *
 * The commands are a table of {name, handler, usage} below; each handler gets the
 * open store and its arguments. Output is JSON (libbson's canonical extended JSON),
 * one record per line, so it pipes into jq and analytics loaders. Exit status: 0
 * success, 1 the log is damaged or the record was not found, 2 usage or
 * connection errors.
 *
 * The CLI opens the store read-only (the `append` command excepted): it can run
 * beside the writing node, and never changes the log, not even to truncate a torn
 * tail.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "events/args.h"
#include "events/event.h"
#include "events/store.h"
#include "recs/replay.h"

#define CHUNK 1000

typedef struct cmd {
    const char *name;
    int mode; /* EV_OPEN_READ / EV_OPEN_WRITE; -1: needs no store */
    int (*run)(ev_store_t *s, int argc, char **argv);
    const char *usage;
} cmd_t;

static const char *prog = "oneblog-events";

/* ---------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------ */

static int print_record(const ev_slice_t *sl)
{
    char *json = ev_record_to_json(sl->data, sl->len);
    if (json == NULL)
        return -EBADMSG;
    puts(json);
    bson_free(json);
    return 0;
}

static int print_list(const ev_list_t *l, uint64_t *last_seq)
{
    for (size_t i = 0; i < l->n; i++) {
        ev_slice_t sl = ev_list_get(l, i);
        ev_record_t r;
        if (ev_record_parse(sl.data, sl.len, &r) < 0 || print_record(&sl) < 0)
            return -EBADMSG;
        if (last_seq)
            *last_seq = r.seq;
    }
    return 0;
}

/* Exit status for a store error, after saying what it was. */
static int fail(ev_store_t *s, const char *what, int rc)
{
    fflush(stdout);
    fprintf(stderr, "%s: %s: %s\n", prog, what,
            ev_store_errmsg(s)[0] ? ev_store_errmsg(s) : strerror(-rc));
    return rc == -EBADMSG ? 1 : 2;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "%s: %s (see %s help)\n", prog, msg, prog);
    return 2;
}

/* ---------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------ */

static int cmd_tail(ev_store_t *s, int argc, char **argv)
{
    uint64_t n = 10, last, from;
    bool follow = false;
    ev_list_t l = EV_LIST_INIT;
    int c, rc = 0;

    optind = 1;
    while ((c = getopt(argc, argv, "n:f")) != -1) {
        if (c == 'n' && ev_parse_u64(optarg, &n))
            continue;
        if (c == 'f') {
            follow = true;
            continue;
        }
        return usage_error("tail: bad option");
    }
    if ((rc = ev_store_last_seq(s, &last)) < 0)
        return fail(s, "tail", rc);
    from = last >= n ? last - n + 1 : 1;
    for (;;) {
        ev_list_clear(&l);
        if ((rc = ev_store_read(s, from, CHUNK, &l)) < 0 || (rc = print_list(&l, &last)) < 0) {
            rc = fail(s, "tail", rc);
            break;
        }
        fflush(stdout);
        if (l.n)
            from = last + 1;
        if (l.n == CHUNK)
            continue;
        if (!follow)
            break;
        rc = ev_store_wait(s, from - 1, 1000);
        if (rc < 0 && rc != -ETIMEDOUT) {
            rc = fail(s, "tail -f", rc);
            break;
        }
        rc = 0;
    }
    ev_list_free(&l);
    return rc;
}

static int cmd_show(ev_store_t *s, int argc, char **argv)
{
    ev_list_t l = EV_LIST_INIT;
    uint64_t seq;
    int rc;

    if (argc != 2)
        return usage_error("show: expected one SEQ or ID");
    if (ev_parse_u64(argv[1], &seq)) {
        rc = ev_store_read(s, seq, 1, &l);
        if (rc == 0 && l.n == 1) {
            ev_record_t r;
            ev_slice_t sl = ev_list_get(&l, 0);
            if (ev_record_parse(sl.data, sl.len, &r) == 0 && r.seq != seq)
                l.n = 0; /* a later record: seq itself is not there */
        }
    } else {
        ev_query_t q = { 0 };
        q.id = argv[1];
        q.limit = 1;
        rc = ev_store_query(s, &q, &l);
    }
    if (rc < 0) {
        ev_list_free(&l);
        return fail(s, "show", rc);
    }
    if (l.n == 0) {
        fprintf(stderr, "%s: show: no event %s\n", prog, argv[1]);
        ev_list_free(&l);
        return 1;
    }
    ev_slice_t sl = ev_list_get(&l, 0);
    bson_t b;
    char *json = NULL;
    if (bson_init_static(&b, sl.data, sl.len))
        json = bson_as_canonical_extended_json(&b, NULL);
    printf("%s\n", json ? json : "");
    bson_free(json);
    ev_list_free(&l);
    return 0;
}

static int cmd_query(ev_store_t *s, int argc, char **argv)
{
    static const struct option opts[] = {
        { "type", required_argument, NULL, 't' },  { "actor", required_argument, NULL, 'a' },
        { "trace", required_argument, NULL, 'r' }, { "since", required_argument, NULL, 's' },
        { "until", required_argument, NULL, 'u' }, { "from", required_argument, NULL, 'f' },
        { "limit", required_argument, NULL, 'l' }, { "id", required_argument, NULL, 'i' },
        { NULL, 0, NULL, 0 }
    };
    ev_query_t q = { 0 };
    ev_list_t l = EV_LIST_INIT;
    uint64_t v;
    int c, rc;

    q.limit = 1000;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': q.type = optarg; break;
        case 'a': q.actor = optarg; break;
        case 'r': q.trace_id = optarg; break;
        case 'i': q.id = optarg; break;
        case 's':
            if (!ev_parse_time(optarg, &q.from_ts_ms))
                return usage_error("query: --since: expected ms or YYYY-MM-DD[THH:MM:SSZ]");
            break;
        case 'u':
            if (!ev_parse_time(optarg, &q.to_ts_ms))
                return usage_error("query: --until: expected ms or YYYY-MM-DD[THH:MM:SSZ]");
            break;
        case 'f':
            if (!ev_parse_u64(optarg, &q.from_seq))
                return usage_error("query: --from: expected a seq");
            break;
        case 'l':
            if (!ev_parse_u64(optarg, &v) || v == 0)
                return usage_error("query: --limit: expected a positive number");
            q.limit = (size_t)v;
            break;
        default:
            return usage_error("query: bad option");
        }
    }
    if (optind != argc)
        return usage_error("query: unexpected argument");
    rc = ev_store_query(s, &q, &l);
    if (rc == 0)
        rc = print_list(&l, NULL);
    ev_list_free(&l);
    return rc < 0 ? fail(s, "query", rc) : 0;
}

/* Resumable export: --state FILE keeps the next seq to export, written after each
 * chunk reached stdout, so a run that was interrupted resumes without gaps (a
 * chunk may be printed twice if the process dies between printing and saving:
 * consumers deduplicate on seq). */
static int save_state(const char *path, uint64_t next)
{
    buf_t tmp = BUF_INIT;
    FILE *f;
    int rc = -EIO;

    buf_printf(&tmp, "%s.tmp", path);
    if ((f = fopen(tmp.data, "w")) != NULL) {
        fprintf(f, "%" PRIu64 "\n", next);
        if (fclose(f) == 0 && rename(tmp.data, path) == 0)
            rc = 0;
    }
    buf_free(&tmp);
    return rc;
}

static int cmd_export(ev_store_t *s, int argc, char **argv)
{
    static const struct option opts[] = { { "format", required_argument, NULL, 'F' },
                                          { "from", required_argument, NULL, 'f' },
                                          { "state", required_argument, NULL, 's' },
                                          { NULL, 0, NULL, 0 } };
    const char *format = NULL, *state = NULL;
    uint64_t from = 1, last = 0, count = 0;
    ev_list_t l = EV_LIST_INIT;
    int c, rc = 0;
    bool from_given = false;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'F')
            format = optarg;
        else if (c == 'f' && ev_parse_u64(optarg, &from))
            from_given = true;
        else if (c == 's')
            state = optarg;
        else
            return usage_error("export: bad option");
    }
    if (format == NULL || strcmp(format, "jsonl") != 0)
        return usage_error("export: --format jsonl is required (the only format)");
    if (state && !from_given) {
        FILE *f = fopen(state, "r");
        if (f) {
            unsigned long long v;
            if (fscanf(f, "%llu", &v) == 1)
                from = v;
            fclose(f);
        }
    }
    for (;;) {
        ev_list_clear(&l);
        rc = ev_store_read(s, from, CHUNK, &l);
        int prc = print_list(&l, &last);
        if (rc == 0)
            rc = prc;
        if (l.n && prc == 0) {
            count += l.n;
            from = last + 1;
            if (fflush(stdout) != 0 || (state && save_state(state, from) < 0)) {
                fprintf(stderr, "%s: export: cannot write output or state\n", prog);
                rc = 2;
                goto out;
            }
        }
        if (rc < 0) {
            rc = fail(s, "export", rc);
            fprintf(stderr, "%s: export: stopped; %" PRIu64 " records written, resume with "
                    "--from %" PRIu64 " once repaired (or past the damage)\n",
                    prog, count, from);
            goto out;
        }
        if (l.n < CHUNK)
            break;
    }
    fprintf(stderr, "%s: export: %" PRIu64 " records; next --from %" PRIu64 "\n", prog, count,
            from);
out:
    ev_list_free(&l);
    return rc;
}

static void on_problem(void *arg, uint64_t seq, const char *where, const char *what)
{
    (void)arg;
    if (seq)
        printf("BROKEN seq %" PRIu64 " at %s: %s\n", seq, where, what);
    else
        printf("BROKEN at %s: %s\n", where, what);
}

static int cmd_verify(ev_store_t *s, int argc, char **argv)
{
    ev_verify_stats_t st;
    int rc;
    (void)argv;
    if (argc != 1)
        return usage_error("verify takes no arguments");
    rc = ev_store_verify(s, on_problem, NULL, &st);
    if (rc < 0 && rc != -EBADMSG)
        return fail(s, "verify", rc);
    if (st.torn_tail_bytes)
        printf("note: %" PRIu64 " bytes of an interrupted append at the end of the log "
               "(never acknowledged; the writer truncates them when it opens the log)\n",
               st.torn_tail_bytes);
    if (rc == -EBADMSG) {
        printf("verify: BROKEN: %" PRIu64 " problem(s); %" PRIu64 " records intact, last seq %"
               PRIu64 "\n", st.problems, st.records, st.last_seq);
        return 1;
    }
    printf("verify: ok: %" PRIu64 " records, last seq %" PRIu64 ", %" PRIu64
           " bytes; checksums, seqs and hash chain intact\n",
           st.records, st.last_seq, st.bytes);
    return 0;
}

/* Append one event directly (operations and tests; a running file-log writer holds
 * the log, so this fails with "another writer" then: append through the node). */
static int cmd_append(ev_store_t *s, int argc, char **argv)
{
    static const struct option opts[] = { { "type", required_argument, NULL, 't' },
                                          { "actor", required_argument, NULL, 'a' },
                                          { "data", required_argument, NULL, 'd' },
                                          { "count", required_argument, NULL, 'n' },
                                          { NULL, 0, NULL, 0 } };
    const char *type = NULL, *actor = NULL, *data = NULL;
    uint64_t count = 1, first;
    int c, rc = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 't')
            type = optarg;
        else if (c == 'a')
            actor = optarg;
        else if (c == 'd')
            data = optarg;
        else if (c == 'n' && ev_parse_u64(optarg, &count) && count > 0 && count <= 100000)
            continue;
        else
            return usage_error("append: bad option");
    }
    if (type == NULL)
        return usage_error("append: --type is required");
    for (uint64_t i = 0; i < count && rc == 0; i++) {
        ev_event_t *ev;
        bson_t b;
        bson_error_t berr;
        if (ev_event_new(type, &ev) < 0)
            return usage_error("append: bad --type");
        if (actor && ev_event_set_actor(ev, actor) < 0) {
            ev_event_free(ev);
            return usage_error("append: bad --actor");
        }
        if (data) {
            bson_t *d = bson_new_from_json((const uint8_t *)data, -1, &berr);
            if (d == NULL) {
                ev_event_free(ev);
                fprintf(stderr, "%s: append: --data: %s\n", prog, berr.message);
                return 2;
            }
            bson_concat(ev_event_data(ev), d);
            bson_destroy(d);
        }
        ev_event_encode(ev, &b);
        ev_slice_t sl = { bson_get_data(&b), b.len };
        rc = ev_store_append(s, &sl, 1, &first);
        bson_destroy(&b);
        ev_event_free(ev);
        if (rc == 0)
            printf("%" PRIu64 "\n", first);
    }
    return rc < 0 ? fail(s, "append", rc) : 0;
}

static int cmd_help(ev_store_t *s, int argc, char **argv);

static const cmd_t commands[] = {
    { "tail", EV_OPEN_READ, cmd_tail, "tail [-n N] [-f]            the last N records (10); -f: follow" },
    { "show", EV_OPEN_READ, cmd_show, "show SEQ|ID                 one record" },
    { "query", EV_OPEN_READ, cmd_query,
      "query [--type T] [--actor A] [--trace ID] [--id ID] [--since TIME] [--until TIME]\n"
      "      [--from SEQ] [--limit N]      matching records (TIME: ms or 2024-05-01T12:00:00Z)" },
    { "export", EV_OPEN_READ, cmd_export,
      "export --format jsonl [--from SEQ] [--state FILE]\n"
      "                              JSON Lines from SEQ; --state resumes where the last run stopped" },
    { "verify", EV_OPEN_READ, cmd_verify, "verify                      checksums, seqs and the hash chain; exit 1 if broken" },
    { "append", EV_OPEN_WRITE, cmd_append,
      "append --type T [--actor A] [--data JSON] [--count N]\n"
      "                              append directly (not while a node owns a file log)" },
    /* Recommendation commands: recs/replay.c. */
    { "replay", EV_OPEN_READ, recs_cli_replay,
      "replay --model recs@V [--since SEQ|TIME] [--sample N] [--event ID] [--snapshots DIR]\n"
      "       [--params K=V,...]    re-run logged recommendations in a sandbox and compare" },
    { "ab-report", EV_OPEN_READ, recs_cli_ab_report,
      "ab-report                   click-through rate per recommendation variant" },
    { "help", -1, cmd_help, "help                        this text" },
    { NULL, 0, NULL, NULL }
};

static int cmd_help(ev_store_t *s, int argc, char **argv)
{
    (void)s;
    (void)argc;
    (void)argv;
    printf("usage: %s [--url URL] COMMAND [ARGS]\n\n"
           "URL defaults to $EVENTS_URL, then %s:\n"
           "  file:DIR[?fsync=always|none|Nms&segment_bytes=N]\n"
           "  mongodb://HOST:PORT/DB[?w=majority&collection=events]\n"
           "  postgres://USER@HOST:PORT/DB[?table=events]\n\ncommands:\n",
           prog, EV_URL_DEFAULT);
    for (const cmd_t *c = commands; c->name; c++)
        printf("  %s\n", c->usage);
    printf("\nexit status: 0 ok, 1 damaged log or not found, 2 usage or connection error\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    const cmd_t *cmd = NULL;
    ev_store_t *s = NULL;
    char err[EV_ERR_LEN];
    int rc, i = 1;

    if (i + 1 < argc && strcmp(argv[i], "--url") == 0) {
        url = argv[i + 1];
        i += 2;
    }
    if (i >= argc)
        return cmd_help(NULL, 0, NULL), 2;
    for (const cmd_t *c = commands; c->name; c++)
        if (strcmp(c->name, argv[i]) == 0)
            cmd = c;
    if (cmd == NULL) {
        fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[i]);
        return 2;
    }
    if (cmd->mode >= 0 && (rc = ev_store_open(url, cmd->mode, &s, err, sizeof err)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err[0] ? err : strerror(-rc));
        return rc == -EBADMSG ? 1 : 2;
    }
    rc = cmd->run(s, argc - i, argv + i);
    ev_store_close(s);
    return rc;
}
