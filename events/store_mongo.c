/* store_mongo.c - the MongoDB event store (libmongoc 1.23).
 *
 * One collection (collection=, default "events") of documents
 *
 *   { _id: ObjectId(00000000 + seq as 8 big-endian bytes), seq: Int64, id, ts: Date,
 *     type, actor, trace_id,          -- indexed copies of the record's fields
 *     raw: BinData(record) }           -- the record's canonical bytes (authoritative;
 *                                         the hash chain is over these bytes)
 *
 * Sequence uniqueness is enforced in our code without a unique secondary index
 * (the test server has none): the _id is derived from the seq, and _id is unique
 * in every MongoDB. An append reads the last record, builds the batch from there
 * and inserts it ordered; if another writer took a seq first, the insert stops at
 * the duplicate key, the records before it are in (and chained correctly), and
 * the rest is retried from the new end. So several nodes may write directly.
 *
 * Write concern comes from the URL (w=, journal=, wtimeoutMS=); without one we ask
 * for {w: "majority", j: true}, so an acknowledged event survives a primary
 * failover and a crash. Indexes: ts, (type, seq), (actor, seq), trace_id, id.
 * Follow polls the highest seq every poll_ms (default 50): change streams and
 * tailable cursors are not available on every deployment we test against.
 *
 * Tested against: the MongoDB-wire-compatible CongoDB server (tests/mongo, in
 * tests/integ/events_contract.sh) with libmongoc 1.23: inserts, ordered
 * insert_many with duplicate-key errors on _id (code 11000, insertedCount),
 * find with sort/limit/projection, createIndexes. Not tested here, relied on from
 * MongoDB's documentation: the majority/journal write concern's durability, and
 * index use for the queries (the test server may scan). Real MongoDB enforces _id
 * uniqueness in every deployment, which is all the seq rule needs.
 *
 * MongoDB cannot refuse an update or delete from another client short of access
 * control: give the services a role with only find and insert on the collection;
 * verify detects any edit or removal through the hash chain.
 */
#include "events/store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "common/buf.h"

typedef struct mongo_store {
    ev_store_t base;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    mongoc_write_concern_t *wc;  /* NULL: the URL's */
    char *coll_name;
    int poll_ms;
} mongo_store_t;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_driver(void)
{
    mongoc_init(); /* process-wide; mongoc_cleanup is left to exit */
}

static int mongo_err(mongo_store_t *ms, const char *what, const bson_error_t *e)
{
    ev__store_err(&ms->base, "mongodb: %s: %s", what, e->message);
    if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM)
        return -ECONNREFUSED;
    return -EIO;
}

static void seq_oid(uint64_t seq, bson_oid_t *oid)
{
    memset(oid->bytes, 0, sizeof oid->bytes);
    for (int i = 0; i < 8; i++)
        oid->bytes[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
}

static void mongo_close(ev_store_t *base)
{
    mongo_store_t *ms = (mongo_store_t *)base;
    if (ms->coll)
        mongoc_collection_destroy(ms->coll);
    if (ms->client)
        mongoc_client_destroy(ms->client);
    if (ms->wc)
        mongoc_write_concern_destroy(ms->wc);
    free(ms->coll_name);
    free(ms);
}

static int create_indexes(mongo_store_t *ms)
{
    static const char *const keys[][2] = { { "ts", NULL },      { "type", "seq" },
                                           { "actor", "seq" },  { "trace_id", NULL },
                                           { "id", NULL },      { "seq", NULL } };
    bson_t cmd = BSON_INITIALIZER, arr, reply;
    bson_error_t e;
    char kb[16];
    const char *k;
    int rc = 0;

    BSON_APPEND_UTF8(&cmd, "createIndexes", ms->coll_name);
    bson_append_array_begin(&cmd, "indexes", -1, &arr);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        bson_t idx, key;
        char name[32];
        bson_uint32_to_string((uint32_t)i, &k, kb, sizeof kb);
        bson_append_document_begin(&arr, k, -1, &idx);
        bson_append_document_begin(&idx, "key", -1, &key);
        BSON_APPEND_INT32(&key, keys[i][0], 1);
        if (keys[i][1])
            BSON_APPEND_INT32(&key, keys[i][1], 1);
        bson_append_document_end(&idx, &key);
        snprintf(name, sizeof name, "%s_%s", keys[i][0], keys[i][1] ? keys[i][1] : "1");
        BSON_APPEND_UTF8(&idx, "name", name);
        bson_append_document_end(&arr, &idx);
    }
    bson_append_array_end(&cmd, &arr);
    if (!mongoc_collection_write_command_with_opts(ms->coll, &cmd, NULL, &reply, &e))
        rc = mongo_err(ms, "createIndexes", &e);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return rc;
}

static int mongo_open(const ev_url_t *url, int mode, ev_store_t **out, char *err, size_t errlen)
{
    mongo_store_t *ms = xcalloc(1, sizeof *ms);
    mongoc_uri_t *uri = NULL;
    bson_error_t e;
    bson_t ping = BSON_INITIALIZER, reply;
    const char *db;
    int rc;

    pthread_once(&init_once, init_driver);
    ms->base.mode = mode;
    ms->poll_ms = atoi(ev_url_opt(url, "poll_ms", "50"));
    if (ms->poll_ms <= 0)
        ms->poll_ms = 50;
    if ((rc = ev__store_sync_opt(&ms->base, url, err, errlen)) < 0)
        goto out;
    ms->coll_name = xstrdup(ev_url_opt(url, "collection", "events"));
    if ((uri = mongoc_uri_new_with_error(url->driver_url, &e)) == NULL) {
        rc = -EINVAL;
        snprintf(err, errlen, "EVENTS_URL: %s", e.message);
        goto out;
    }
    /* Fail fast on an unreachable server (the driver's default waits 30 s). */
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 3000);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 3000);
    db = mongoc_uri_get_database(uri) ? mongoc_uri_get_database(uri) : "oneblog";
    ms->client = mongoc_client_new_from_uri_with_error(uri, &e);
    if (ms->client == NULL) {
        rc = -EINVAL;
        snprintf(err, errlen, "mongodb: %s", e.message);
        goto out;
    }
    mongoc_client_set_error_api(ms->client, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_appname(ms->client, "oneblog-events");
    ms->coll = mongoc_client_get_collection(ms->client, db, ms->coll_name);
    if (mongoc_write_concern_get_w(mongoc_uri_get_write_concern(uri)) ==
        MONGOC_WRITE_CONCERN_W_DEFAULT) {
        ms->wc = mongoc_write_concern_new();
        mongoc_write_concern_set_wmajority(ms->wc, 10000);
        mongoc_write_concern_set_journal(ms->wc, ms->base.sync != EV_SYNC_NONE);
        mongoc_collection_set_write_concern(ms->coll, ms->wc);
    }
    BSON_APPEND_INT32(&ping, "ping", 1);
    if (!mongoc_client_command_simple(ms->client, db, &ping, NULL, &reply, &e)) {
        rc = -ECONNREFUSED;
        snprintf(err, errlen, "mongodb: cannot reach the server: %s", e.message);
        bson_destroy(&reply);
        goto out;
    }
    bson_destroy(&reply);
    if (mode == EV_OPEN_WRITE && (rc = create_indexes(ms)) < 0) {
        snprintf(err, errlen, "%s", ms->base.err);
        goto out;
    }
    *out = &ms->base;
    ms = NULL;
out:
    bson_destroy(&ping);
    if (uri)
        mongoc_uri_destroy(uri);
    if (ms)
        mongo_close(&ms->base);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------------ */

/* find(filter) sorted by seq, at most limit; push each raw record (checked). */
static int find_raw(mongo_store_t *ms, const bson_t *filter, int64_t limit, bool desc,
                    const ev_query_t *q, ev_list_t *out)
{
    bson_t opts = BSON_INITIALIZER, sort, proj;
    const bson_t *doc;
    mongoc_cursor_t *cur;
    bson_error_t e;
    int rc = 0;

    bson_append_document_begin(&opts, "sort", -1, &sort);
    BSON_APPEND_INT32(&sort, "seq", desc ? -1 : 1);
    bson_append_document_end(&opts, &sort);
    bson_append_document_begin(&opts, "projection", -1, &proj);
    BSON_APPEND_INT32(&proj, "raw", 1);
    bson_append_document_end(&opts, &proj);
    BSON_APPEND_INT64(&opts, "limit", limit);
    cur = mongoc_collection_find_with_opts(ms->coll, filter, &opts, NULL);
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const uint8_t *raw;
        uint32_t rl;
        bson_subtype_t st;
        ev_record_t r;
        if (!bson_iter_init_find(&it, doc, "raw") || !BSON_ITER_HOLDS_BINARY(&it)) {
            rc = -EBADMSG;
            ev__store_err(&ms->base, "mongodb: a document of %s has no raw record; reads stop "
                          "here, run oneblog-events verify", ms->coll_name);
            break;
        }
        bson_iter_binary(&it, &st, &rl, &raw);
        if (ev_record_parse(raw, rl, &r) < 0) {
            rc = -EBADMSG;
            ev__store_err(&ms->base, "mongodb: a document of %s holds a damaged record; reads "
                          "stop here, run oneblog-events verify", ms->coll_name);
            break;
        }
        if (q && !ev_query_match(q, &r))
            continue;
        ev_list_push(out, raw, rl);
    }
    if (rc == 0 && mongoc_cursor_error(cur, &e))
        rc = mongo_err(ms, "find", &e);
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    return rc;
}

static int mongo_read(ev_store_t *base, uint64_t from, size_t max, ev_list_t *out)
{
    mongo_store_t *ms = (mongo_store_t *)base;
    bson_t f = BSON_INITIALIZER, c;
    int rc;
    bson_append_document_begin(&f, "seq", -1, &c);
    BSON_APPEND_INT64(&c, "$gte", (int64_t)from);
    bson_append_document_end(&f, &c);
    rc = find_raw(ms, &f, (int64_t)max, false, NULL, out);
    bson_destroy(&f);
    return rc;
}

static int mongo_query(ev_store_t *base, const ev_query_t *q, ev_list_t *out)
{
    mongo_store_t *ms = (mongo_store_t *)base;
    bson_t f = BSON_INITIALIZER, c;
    int rc;
    bson_append_document_begin(&f, "seq", -1, &c);
    BSON_APPEND_INT64(&c, "$gte", (int64_t)q->from_seq);
    bson_append_document_end(&f, &c);
    if (q->from_ts_ms || q->to_ts_ms) {
        bson_append_document_begin(&f, "ts", -1, &c);
        if (q->from_ts_ms)
            BSON_APPEND_DATE_TIME(&c, "$gte", q->from_ts_ms);
        if (q->to_ts_ms)
            BSON_APPEND_DATE_TIME(&c, "$lt", q->to_ts_ms);
        bson_append_document_end(&f, &c);
    }
    if (q->type)
        BSON_APPEND_UTF8(&f, "type", q->type);
    if (q->actor)
        BSON_APPEND_UTF8(&f, "actor", q->actor);
    if (q->trace_id)
        BSON_APPEND_UTF8(&f, "trace_id", q->trace_id);
    if (q->id)
        BSON_APPEND_UTF8(&f, "id", q->id);
    rc = find_raw(ms, &f, (int64_t)q->limit, false, q, out);
    bson_destroy(&f);
    return rc;
}

/* The last record (raw bytes into out, cleared first); none: out empty. */
static int last_record(mongo_store_t *ms, ev_list_t *out)
{
    bson_t f = BSON_INITIALIZER;
    int rc;
    ev_list_clear(out);
    rc = find_raw(ms, &f, 1, true, NULL, out);
    bson_destroy(&f);
    return rc;
}

static int mongo_last_seq(ev_store_t *base, uint64_t *out)
{
    mongo_store_t *ms = (mongo_store_t *)base;
    ev_list_t l = EV_LIST_INIT;
    int rc = last_record(ms, &l);
    *out = 0;
    if (rc == 0 && l.n == 1) {
        ev_record_t r;
        ev_slice_t sl = ev_list_get(&l, 0);
        if (ev_record_parse(sl.data, sl.len, &r) == 0)
            *out = r.seq;
    }
    ev_list_free(&l);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Append
 * ------------------------------------------------------------------------------ */

/* Insert evs[0..n) after the current last record. Returns 0 with *inserted = n,
 * -EAGAIN with *inserted = the records that went in before another writer's seq
 * got in the way, or an error. */
static int insert_after_last(mongo_store_t *ms, const ev_slice_t *evs, size_t n,
                             uint64_t *first, size_t *inserted)
{
    ev_list_t l = EV_LIST_INIT;
    uint8_t prev[EV_HASH_LEN] = { 0 };
    uint64_t seq = 1;
    buf_t recs = BUF_INIT;
    bson_t *docs = NULL, reply = BSON_INITIALIZER;
    const bson_t **dp = NULL;
    bson_error_t e;
    bson_iter_t it;
    int rc;

    *inserted = 0;
    if ((rc = last_record(ms, &l)) < 0)
        goto out;
    if (l.n == 1) {
        ev_slice_t sl = ev_list_get(&l, 0);
        ev_record_t r;
        ev_record_parse(sl.data, sl.len, &r);
        seq = r.seq + 1;
        ev_record_hash(sl.data, sl.len, prev);
    }
    *first = seq;
    size_t *roff = xmalloc(n * sizeof *roff), *rlen = xmalloc(n * sizeof *rlen);
    for (size_t i = 0; i < n; i++) {
        roff[i] = recs.len;
        rlen[i] = ev_record_build(evs[i].data, evs[i].len, seq + i, prev, &recs);
        ev_record_hash((uint8_t *)recs.data + roff[i], rlen[i], prev);
    }
    docs = xcalloc(n, sizeof *docs);
    dp = xcalloc(n, sizeof *dp);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *raw = (uint8_t *)recs.data + roff[i];
        ev_record_t r;
        bson_oid_t oid;
        ev_record_parse(raw, rlen[i], &r);
        seq_oid(r.seq, &oid);
        bson_init(&docs[i]);
        BSON_APPEND_OID(&docs[i], "_id", &oid);
        BSON_APPEND_INT64(&docs[i], "seq", (int64_t)r.seq);
        BSON_APPEND_UTF8(&docs[i], "id", r.id);
        BSON_APPEND_DATE_TIME(&docs[i], "ts", r.ts_ms);
        BSON_APPEND_UTF8(&docs[i], "type", r.type);
        if (r.actor)
            BSON_APPEND_UTF8(&docs[i], "actor", r.actor);
        if (r.trace_id)
            BSON_APPEND_UTF8(&docs[i], "trace_id", r.trace_id);
        BSON_APPEND_BINARY(&docs[i], "raw", BSON_SUBTYPE_BINARY, raw, (uint32_t)rlen[i]);
        dp[i] = &docs[i];
    }
    free(roff);
    free(rlen);
    bson_destroy(&reply);
    if (mongoc_collection_insert_many(ms->coll, dp, n, NULL, &reply, &e)) {
        *inserted = n;
        rc = 0;
        goto out;
    }
    if (bson_iter_init_find(&it, &reply, "insertedCount") && BSON_ITER_HOLDS_INT32(&it))
        *inserted = (size_t)bson_iter_int32(&it);
    if (e.code == 11000) {
        rc = -EAGAIN; /* another writer's seq: retry the rest after the new end */
    } else {
        rc = mongo_err(ms, "insert", &e);
    }
out:
    bson_destroy(&reply);
    for (size_t i = 0; docs && i < n; i++)
        bson_destroy(&docs[i]);
    free(docs);
    free(dp);
    buf_free(&recs);
    ev_list_free(&l);
    return rc;
}

static int mongo_append(ev_store_t *base, const ev_slice_t *evs, size_t n, uint64_t *first_seq)
{
    mongo_store_t *ms = (mongo_store_t *)base;
    size_t done = 0, ins;
    uint64_t first;
    int rc = 0;

    /* Bounded: each round either inserts something or met another writer that did. */
    for (int round = 0; done < n && round < 1000; round++) {
        rc = insert_after_last(ms, evs + done, n - done, &first, &ins);
        if (done == 0 && ins > 0)
            *first_seq = first;
        done += ins;
        if (rc != -EAGAIN && rc != 0)
            return rc;
    }
    if (done < n) {
        ev__store_err(base, "mongodb: could not find a free seq after 1000 tries");
        return -EBUSY;
    }
    /* A batch split by another writer is not consecutive; its first seq is still
     * the one of its first event, and the events server reports each event's seq
     * as first + index only for unsplit batches, which is the rule with one writer
     * per node. */
    return 0;
}

static int mongo_wait(ev_store_t *base, uint64_t after, int timeout_ms)
{
    mongo_store_t *ms = (mongo_store_t *)base;
    struct timespec t0, t;
    uint64_t last;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if ((rc = mongo_last_seq(base, &last)) < 0)
            return rc;
        if (last > after)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms)
            return -ETIMEDOUT;
        int64_t nap = timeout_ms - el < ms->poll_ms ? timeout_ms - el : ms->poll_ms;
        struct timespec ts = { (time_t)(nap / 1000), (long)(nap % 1000) * 1000000 };
        nanosleep(&ts, NULL);
    }
}

static const char *mongo_where(uint64_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "document seq=%" PRIu64, seq);
    return buf;
}

static int mongo_verify(ev_store_t *base, ev_verify_cb cb, void *arg, ev_verify_stats_t *st)
{
    return ev__verify_by_reading(base, cb, arg, st, mongo_where);
}

const ev_store_ops_t ev_store_mongo_ops = {
    .scheme = "mongodb",
    .open = mongo_open,
    .close = mongo_close,
    .append = mongo_append,
    .last_seq = mongo_last_seq,
    .read = mongo_read,
    .query = mongo_query,
    .wait = mongo_wait,
    .verify = mongo_verify,
};
