/* events_record_fuzz.c - libFuzzer target for the event log's parsers: the record
 * parser (ev_record_parse, ev_event_validate, the JSON export, the chain check)
 * and the file store's frame scanner, recovery and verify, which read segment
 * files written by anyone with access to the directory.
 *
 * Each input is used twice: as one record, and as the body of a segment file
 * (after a valid header) that a reader opens, reads, queries and verifies, and a
 * writer then opens (recovery: truncate a torn tail or refuse damage) and appends
 * to. Nothing may crash, leak, or return a record that fails ev_record_parse.
 * Whatever our one-walk check accepts (ev_record_parse, ev_event_validate),
 * libbson's own bson_validate must accept too.
 *
 *   make fuzz   (runs every tests/fuzz target for FUZZ_SECONDS)
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "events/event.h"
#include "events/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], url[128], seg[128];

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void check_list(const ev_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        ev_slice_t sl = ev_list_get(l, i);
        ev_record_t r;
        if (ev_record_parse(sl.data, sl.len, &r) != 0)
            abort(); /* a store returned a record that does not parse */
    }
}

static void fuzz_segment(const uint8_t *data, size_t size)
{
    uint8_t h[32] = { 0 };
    char err[EV_ERR_LEN];
    ev_store_t *s = NULL;
    ev_list_t l = EV_LIST_INIT;
    int fd;

    if (dir[0] == '\0') {
        strcpy(dir, "/tmp/ev_fuzz.XXXXXX");
        if (mkdtemp(dir) == NULL)
            abort();
        snprintf(url, sizeof url, "file:%s", dir);
        snprintf(seg, sizeof seg, "%s/%020d.log", dir, 1);
    }
    /* A fresh log: one segment with a valid header and the input as its body. */
    unlink(seg);
    {
        char idx[160];
        snprintf(idx, sizeof idx, "%s/%020d.idx", dir, 1);
        unlink(idx);
    }
    memcpy(h, "OBEVLOG1", 8);
    put_le(h + 8, 1, 4);
    put_le(h + 16, 1, 8);
    put_le(h + 24, crc32(0L, h, 24), 4);
    fd = open(seg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, h, sizeof h) != (ssize_t)sizeof h ||
        (size && write(fd, data, size) != (ssize_t)size))
        abort();
    close(fd);

    if (ev_store_open(url, EV_OPEN_READ, &s, err, sizeof err) == 0) {
        ev_verify_stats_t st;
        ev_query_t q = { 0 };
        ev_store_read(s, 1, 100, &l);
        check_list(&l);
        ev_list_clear(&l);
        q.type = "page.view";
        q.from_ts_ms = 1;
        ev_store_query(s, &q, &l);
        check_list(&l);
        ev_list_clear(&l);
        ev_store_verify(s, NULL, NULL, &st);
        ev_store_close(s);
    }
    if (ev_store_open(url, EV_OPEN_WRITE, &s, err, sizeof err) == 0) {
        /* Recovered: an append must work and everything must read back whole. */
        static bson_t ev;
        static bool have_ev;
        if (!have_ev) {
            ev_event_t *e;
            ev_event_new("page.view", &e);
            ev_event_encode(e, &ev);
            ev_event_free(e);
            have_ev = true;
        }
        ev_slice_t sl = { bson_get_data(&ev), ev.len };
        uint64_t first;
        ev_verify_stats_t st;
        if (ev_store_append(s, &sl, 1, &first) != 0)
            abort();
        ev_store_read(s, 1, 1000, &l);
        check_list(&l);
        if (ev_store_verify(s, NULL, NULL, &st) == -EIO)
            abort();
        ev_store_close(s);
    }
    ev_list_free(&l);
}

/* The structural check our walk replaced (event.c strings_ok): it must agree. */
static void libbson_agrees(const uint8_t *data, size_t size)
{
    bson_t b;
    size_t off;
    if (!bson_init_static(&b, data, size) || !bson_validate(&b, BSON_VALIDATE_NONE, &off))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ev_record_t r;
    if (ev_event_validate(data, size) == 0)
        libbson_agrees(data, size);
    if (ev_record_parse(data, size, &r) == 0) {
        libbson_agrees(data, size);
        ev_chain_t c;
        char *json = ev_record_to_json(data, size);
        if (json == NULL)
            abort();
        bson_free(json);
        ev_chain_init(&c);
        ev_chain_next(&c, &r);
    }
    if (size <= 64 * 1024)
        fuzz_segment(data, size);
    return 0;
}
