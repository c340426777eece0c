/* event_test.c - events/event.c: building events, ids, records, hashes, the chain. */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "events/event.h"

/* Encode an event into a malloc'd buffer. */
static uint8_t *encode(ev_event_t *ev, size_t *len)
{
    bson_t b;
    ev_event_encode(ev, &b);
    *len = b.len;
    uint8_t *p = malloc(b.len);
    memcpy(p, bson_get_data(&b), b.len);
    bson_destroy(&b);
    return p;
}

static uint8_t *simple_event(const char *type, const char *actor, size_t *len)
{
    ev_event_t *ev;
    ASSERT_EQ(ev_event_new(type, &ev), 0);
    if (actor)
        ASSERT_EQ(ev_event_set_actor(ev, actor), 0);
    uint8_t *p = encode(ev, len);
    ev_event_free(ev);
    return p;
}

TEST(event_new_rejects_bad_types)
{
    ev_event_t *ev = NULL;
    ASSERT_EQ(ev_event_new("", &ev), -EINVAL);
    ASSERT_EQ(ev_event_new("Page.View", &ev), -EINVAL);
    ASSERT_EQ(ev_event_new("page view", &ev), -EINVAL);
    ASSERT_EQ(ev_event_new(NULL, &ev), -EINVAL);
    ASSERT_EQ(ev_event_new("page.view", &ev), 0);
    ASSERT_EQ(ev_event_set_trace(ev, "abc", "def"), -EINVAL);
    ASSERT_EQ(ev_event_set_trace(ev, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"), 0);
    ev_event_free(ev);
}

TEST(ulids_are_monotonic_and_well_formed)
{
    char prev[EV_ID_LEN + 1] = "", id[EV_ID_LEN + 1];
    for (int i = 0; i < 5000; i++) {
        ev_ulid(id);
        ASSERT_EQ(strlen(id), (size_t)EV_ID_LEN);
        ASSERT_EQ(strspn(id, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), (size_t)EV_ID_LEN);
        ASSERT(strcmp(prev, id) < 0);
        memcpy(prev, id, sizeof id);
    }
}

/* ev_ulid draws its random bytes ahead, several ids' worth: a forked child must
 * not hand out the parent's next random part (same ms: the same id). */
TEST(ulids_of_a_forked_child_are_not_the_parents)
{
    char first[EV_ID_LEN + 1], mine[EV_ID_LEN + 1], child[EV_ID_LEN + 1] = "";
    int fd[2];
    ev_ulid(first); /* the draw ahead happens here */
    nanosleep(&(struct timespec){ .tv_nsec = 3 * 1000 * 1000 }, NULL); /* a new ms */
    ASSERT_EQ(pipe(fd), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        char id[EV_ID_LEN + 1];
        ev_ulid(id);
        _exit(write(fd[1], id, EV_ID_LEN) == EV_ID_LEN ? 0 : 1);
    }
    ev_ulid(mine);
    ASSERT_EQ(read(fd[0], child, EV_ID_LEN), (ssize_t)EV_ID_LEN);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(fd[0]);
    close(fd[1]);
    /* The last 16 characters are the 80 random bits. */
    ASSERT(strcmp(mine + 10, child + 10) != 0);
}

TEST(recommendation_event_has_every_field)
{
    ev_event_t *ev;
    bson_t params = BSON_INITIALIZER;
    const char *hist[] = { "p3", "p2" }, *cands[] = { "p4", "p5", "p6" };
    size_t len;

    ASSERT_EQ(ev_event_new("recs.request", &ev), 0);
    ASSERT_EQ(ev_event_set_ts_ms(ev, 1700000000123), 0);
    ASSERT_EQ(ev_event_set_trace(ev, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"), 0);
    ASSERT_EQ(ev_event_set_actor(ev, "r-42"), 0);
    ASSERT_EQ(ev_event_set_node(ev, "client@127.0.0.1"), 0);
    ASSERT_EQ(ev_event_set_app_version(ev, "1.2.3"), 0);
    BSON_APPEND_INT32(&params, "k", 5);
    ASSERT_EQ(ev_event_set_model(ev, "cooccur", "v7", &params), 0);
    ASSERT_EQ(ev_event_set_input(ev, hist, 2, "p1", cands, 3), 0);
    ASSERT_EQ(ev_event_add_output(ev, "p5", 0.9), 0);
    ASSERT_EQ(ev_event_add_output(ev, "p4", 0.5), 0);
    ASSERT_EQ(ev_event_set_latency_us(ev, 420), 0);
    uint8_t *p = encode(ev, &len);
    ASSERT_EQ(ev_event_validate(p, len), 0);

    /* As a record: the JSON export shows every field in canonical extended JSON. */
    buf_t rec = BUF_INIT;
    uint8_t zero[EV_HASH_LEN] = { 0 };
    size_t rl = ev_record_build(p, len, 7, zero, &rec);
    char *json = ev_record_to_json((uint8_t *)rec.data, rl);
    ASSERT_NOT_NULL(json);
    const char *want[] = { "\"seq\" : { \"$numberLong\" : \"7\" }", "\"prev\" : { \"$binary\"",
                           "\"type\" : \"recs.request\"", "\"actor\" : \"r-42\"",
                           "\"$date\" : { \"$numberLong\" : \"1700000000123\" }",
                           "\"trace_id\" : \"4bf92f3577b34da6a3ce929d0e0e4736\"",
                           "\"span_id\" : \"00f067aa0ba902b7\"", "\"name\" : \"cooccur\"",
                           "\"version\" : \"v7\"", "\"k\" : { \"$numberInt\" : \"5\" }",
                           "\"history\" : [ \"p3\", \"p2\" ]", "\"context_post\" : \"p1\"",
                           "\"candidates\" : [ \"p4\", \"p5\", \"p6\" ]",
                           "\"post\" : \"p5\", \"score\" : { \"$numberDouble\" : \"0.9",
                           "\"latency_us\" : { \"$numberLong\" : \"420\" }",
                           "\"node\" : \"client@127.0.0.1\"", "\"app_version\" : \"1.2.3\"" };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (strstr(json, want[i]) == NULL)
            ASSERT_STR_EQ(json, want[i]);
    }
    bson_free(json);
    buf_free(&rec);
    bson_destroy(&params);
    free(p);
    ev_event_free(ev);
}

TEST(large_candidate_sets_are_digested)
{
    ev_event_t *ev;
    const char *c[100];
    char names[100][8];
    size_t len;
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "p%d", i);
        c[i] = names[i];
    }
    ASSERT_EQ(ev_event_new("recs.request", &ev), 0);
    ASSERT_EQ(ev_event_set_input(ev, NULL, 0, NULL, c, 100), 0);
    uint8_t *p = encode(ev, &len);
    bson_t b;
    bson_iter_t it;
    ASSERT(bson_init_static(&b, p, len));
    ASSERT(bson_iter_init_find(&it, &b, "input"));
    bson_iter_t sub;
    ASSERT(bson_iter_recurse(&it, &sub));
    ASSERT(bson_iter_find(&sub, "candidates_digest"));
    ASSERT_EQ(strlen(bson_iter_utf8(&sub, NULL)), (size_t)64);
    ASSERT(bson_iter_find(&sub, "candidates_n"));
    ASSERT_EQ(bson_iter_int64(&sub), 100);
    free(p);
    ev_event_free(ev);
}

TEST(validate_rejects_store_fields_and_missing_fields)
{
    bson_t b = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&b, "id", "x");
    BSON_APPEND_DATE_TIME(&b, "ts", 1);
    ASSERT_EQ(ev_event_validate(bson_get_data(&b), b.len), -EINVAL); /* no type */
    BSON_APPEND_UTF8(&b, "type", "page.view");
    ASSERT_EQ(ev_event_validate(bson_get_data(&b), b.len), 0);
    BSON_APPEND_INT64(&b, "seq", 3);
    ASSERT_EQ(ev_event_validate(bson_get_data(&b), b.len), -EINVAL);
    bson_destroy(&b);
    uint8_t junk[16] = { 16, 0, 0, 0, 2, 'a', 0, 9, 9, 9, 9 };
    ASSERT_EQ(ev_event_validate(junk, sizeof junk), -EINVAL);
}

TEST(record_roundtrip_and_parse_errors)
{
    size_t len;
    uint8_t *p = simple_event("page.view", "r-1", &len);
    uint8_t prev[EV_HASH_LEN];
    memset(prev, 0xab, sizeof prev);
    buf_t rec = BUF_INIT;
    size_t rl = ev_record_build(p, len, 123456789012ull, prev, &rec);
    ASSERT_EQ(rl, len + 56);
    ev_record_t r;
    ASSERT_EQ(ev_record_parse((uint8_t *)rec.data, rl, &r), 0);
    ASSERT_EQ(r.seq, 123456789012ull);
    ASSERT_MEM_EQ(r.prev, prev, EV_HASH_LEN);
    ASSERT_STR_EQ(r.type, "page.view");
    ASSERT_STR_EQ(r.actor, "r-1");
    ASSERT_NULL(r.trace_id);
    ASSERT_EQ(strlen(r.id), (size_t)EV_ID_LEN);

    /* ev_record_fields finds the same fields. */
    ev_record_t f;
    ASSERT_EQ(ev_record_fields((uint8_t *)rec.data, rl, &f), 0);
    ASSERT_MEM_EQ(&f, &r, sizeof r);

    /* Every truncation and every single-byte change of the length is refused. */
    for (size_t cut = 0; cut < rl; cut++) {
        ASSERT_EQ(ev_record_parse((uint8_t *)rec.data, cut, &r), -EBADMSG);
        ASSERT_EQ(ev_record_fields((uint8_t *)rec.data, cut, &r), -EBADMSG);
    }
    uint8_t *copy = malloc(rl);
    memcpy(copy, rec.data, rl);
    copy[0] ^= 1;
    ASSERT_EQ(ev_record_parse(copy, rl, &r), -EBADMSG);
    /* An event (no seq/prev) is not a record. */
    ASSERT_EQ(ev_record_parse(p, len, &r), -EBADMSG);
    free(copy);
    buf_free(&rec);
    free(p);
}

TEST(chain_detects_edit_and_removal)
{
    buf_t recs[4] = { BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT };
    uint8_t prev[EV_HASH_LEN] = { 0 };
    ev_record_t r[4];
    for (int i = 0; i < 4; i++) {
        size_t len;
        uint8_t *p = simple_event("page.view", "reader", &len);
        size_t rl = ev_record_build(p, len, (uint64_t)i + 1, prev, &recs[i]);
        ev_record_hash((uint8_t *)recs[i].data, rl, prev);
        ASSERT_EQ(ev_record_parse((uint8_t *)recs[i].data, rl, &r[i]), 0);
        free(p);
    }
    ev_chain_t c;
    ev_chain_init(&c);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(ev_chain_next(&c, &r[i]), 0);

    /* Removal of record 2: record 3 comes with the wrong seq. */
    ev_chain_init(&c);
    ASSERT_EQ(ev_chain_next(&c, &r[0]), 0);
    ASSERT_EQ(ev_chain_next(&c, &r[2]), -ERANGE);
    ASSERT_EQ(ev_chain_next(&c, &r[3]), 0); /* carries on after one report */

    /* An edit of record 2 (same length, still valid BSON): record 3's prev fails. */
    char *a = memmem(recs[1].data, recs[1].len, "reader", 6);
    ASSERT_NOT_NULL(a);
    a[0] = 'R';
    ev_chain_init(&c);
    ASSERT_EQ(ev_chain_next(&c, &r[0]), 0);
    ASSERT_EQ(ev_chain_next(&c, &r[1]), 0);
    ASSERT_EQ(ev_chain_next(&c, &r[2]), -EBADMSG);
    for (int i = 0; i < 4; i++)
        buf_free(&recs[i]);
}

/* Regression (tests/fuzz/events_record_fuzz.c): libbson 1.23's bson_validate with
 * BSON_VALIDATE_UTF8 accepted a string holding NULs and a bad UTF-8 sequence, and
 * the JSON export of the "valid" record then failed. */
TEST(strings_must_be_utf8_without_nul)
{
    static const char bad[][4] = { "\xdf" "B", "a\0b", "\xff" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bson_t b = BSON_INITIALIZER, d;
        BSON_APPEND_UTF8(&b, "id", "x");
        BSON_APPEND_DATE_TIME(&b, "ts", 1);
        BSON_APPEND_UTF8(&b, "type", "page.view");
        BSON_APPEND_DOCUMENT_BEGIN(&b, "data", &d);
        bson_append_utf8(&d, "s", 1, bad[i], i == 1 ? 3 : (int)strlen(bad[i]));
        bson_append_document_end(&b, &d);
        ASSERT_EQ(ev_event_validate(bson_get_data(&b), b.len), -EINVAL);
        buf_t rec = BUF_INIT;
        uint8_t zero[EV_HASH_LEN] = { 0 };
        size_t rl = ev_record_build(bson_get_data(&b), b.len, 1, zero, &rec);
        ev_record_t r;
        ASSERT_EQ(ev_record_parse((uint8_t *)rec.data, rl, &r), -EBADMSG);
        /* ev_record_fields does not look at strings it does not return: it is
         * for records checked before. */
        ASSERT_EQ(ev_record_fields((uint8_t *)rec.data, rl, &r), 0);
        ASSERT_STR_EQ(r.type, "page.view");
        buf_free(&rec);
        bson_destroy(&b);
    }
}

/* event.c checks a document in one walk of bson_iter (strings_ok) instead of
 * bson_validate followed by that walk: whatever it accepts, bson_validate must
 * accept too. Damaged copies of a full recommendation event (bytes changed,
 * lengths changed, cut short, non-ASCII and NUL bytes put in strings), 200,000 of
 * them, through ev_event_validate; each accepted one is checked with libbson,
 * and some of each kind must be accepted and some refused. */
TEST(one_walk_check_accepts_nothing_bson_validate_refuses)
{
    ev_event_t *ev;
    ASSERT_EQ(ev_event_new("recs.request", &ev), 0);
    ev_event_set_actor(ev, "reader-1");
    bson_t params = BSON_INITIALIZER;
    BSON_APPEND_DOUBLE(&params, "w_title", 3.0);
    ASSERT_EQ(ev_event_set_model(ev, "recs", "1", &params), 0);
    bson_destroy(&params);
    const char *hist[] = { "post-1", "post-2", "p\xc3\xa9" };
    const char *cand[] = { "post-3", "post-4" };
    ASSERT_EQ(ev_event_set_input(ev, hist, 3, "post-5", cand, 2), 0);
    ev_event_add_output(ev, "post-3", 0.5);
    ev_event_set_latency_us(ev, 12);
    BSON_APPEND_BOOL(ev_event_data(ev), "flag", true);
    BSON_APPEND_BINARY(ev_event_data(ev), "blob", BSON_SUBTYPE_BINARY, (const uint8_t *)"ab", 2);
    size_t len;
    uint8_t *orig = encode(ev, &len);
    ev_event_free(ev);
    ASSERT_EQ(ev_event_validate(orig, len), 0);

    uint8_t *p = malloc(len);
    uint64_t x = 0x2545F4914F6CDD1DULL;
    int accepted = 0, refused = 0;
    for (int it = 0; it < 200000; it++) {
        memcpy(p, orig, len);
        size_t n = len;
        int changes = 1 + it % 3;
        for (int c = 0; c < changes; c++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x >> 8) % len;
            switch ((x >> 3) % 5) {
            case 0: p[at] = (uint8_t)(x >> 40); break;            /* any byte */
            case 1: p[at] ^= (uint8_t)(1u << ((x >> 40) & 7)); break; /* one bit */
            case 2: p[at] = (uint8_t)((x >> 40) & 1 ? 0x80 | (x >> 48) : 0); break;
            case 3: p[at] = (uint8_t)(p[at] + ((x >> 40) & 1 ? 1 : -1)); break; /* a length? */
            case 4: n = at > 5 ? at : n; break;                    /* cut short */
            }
        }
        if (n != len && (x >> 20) & 1) { /* a cut document whose header says so */
            p[0] = (uint8_t)n, p[1] = (uint8_t)(n >> 8), p[2] = 0, p[3] = 0;
            p[n - 1] = 0;
        }
        if (ev_event_validate(p, n) == 0) {
            bson_t b;
            size_t off;
            ASSERT(bson_init_static(&b, p, n));
            ASSERT(bson_validate(&b, BSON_VALIDATE_NONE, &off));
            accepted++;
        } else {
            refused++;
        }
    }
    printf("accepted %d, refused %d\n", accepted, refused);
    ASSERT(accepted > 1000);
    ASSERT(refused > 1000);
    free(p);
    free(orig);
}

/* The record hash is SHA-256 (FIPS 180-2's test vectors), the same from every
 * thread and across calls that reuse the thread's digest context. */
static void *hash_abc(void *arg)
{
    ev_record_hash((const uint8_t *)"abc", 3, arg);
    return NULL;
}

TEST(record_hash_is_sha256)
{
    static const char abc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    static const char two[] = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
    uint8_t h[EV_HASH_LEN];
    char hex[2 * EV_HASH_LEN + 1];
    for (int i = 0; i < 3; i++) {
        ev_record_hash((const uint8_t *)"abc", 3, h);
        ev_hash_hex(h, hex);
        ASSERT_STR_EQ(hex, abc);
        const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        ev_record_hash((const uint8_t *)m, strlen(m), h);
        ev_hash_hex(h, hex);
        ASSERT_STR_EQ(hex, two);
    }
    pthread_t t;
    memset(h, 0, sizeof h);
    ASSERT_EQ(pthread_create(&t, NULL, hash_abc, h), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ev_hash_hex(h, hex);
    ASSERT_STR_EQ(hex, abc);
}
