/* snapshot_test.c - recs/snapshot.c: an index written as DIR/DIGEST.snap reads
 * back the same (posts, digest, the models' answers), is written once, read-only
 * and whole; bad files are refused with the documented errors. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bson/bson.h>

#include "common/buf.h"
#include "recs/snapshot.h"

static recs_index_t *small_index(void)
{
    static const char *bodies[] = { "Erlang processes and mailboxes", "C structs and pointers",
                                    "Mailboxes in C processes", "Pointers, arrays, strings" };
    recs_post_t *v = xcalloc(4, sizeof *v);
    for (int i = 0; i < 4; i++) {
        char slug[32], title[32];
        snprintf(slug, sizeof slug, "post-%d", i);
        snprintf(title, sizeof title, "Title %d \xc3\xa9t\xc3\xa9", i); /* UTF-8 kept */
        v[i].id = 40 - i;
        v[i].slug = xstrdup(slug);
        v[i].title = xstrdup(title);
        v[i].plaintext = xstrdup(bodies[i]);
        v[i].ntags = i % 3;
        v[i].tags = v[i].ntags ? xcalloc((size_t)v[i].ntags, sizeof(char *)) : NULL;
        for (int t = 0; t < v[i].ntags; t++)
            v[i].tags[t] = xstrdup(t ? "c" : "erlang");
        v[i].published_at = i == 2 ? 0 : 1700000000 + i;
    }
    return recs_index_new(v, 4);
}

static void tmpdir(char *out, size_t len)
{
    snprintf(out, len, "/tmp/snap_test.XXXXXX");
    ASSERT(mkdtemp(out) != NULL);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

static int nstr_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

TEST(written_once_read_only_and_read_back_the_same)
{
    char dir[64], sub[128], path[256], err[256];
    tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/recs/snapshots", dir); /* parents made too */
    recs_index_t *ix = small_index(), *back = NULL;
    ASSERT_EQ(recs_snapshot_write(ix, sub, err, sizeof err), 0);
    recs_snapshot_path(sub, ix->digest, path, sizeof path);
    struct stat st, st2;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0444);
    /* Nothing else in the directory (no temporary file left). */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "[ $(ls -A '%s' | wc -l) -eq 1 ]", sub);
    ASSERT_EQ(system(cmd), 0);
    /* A second write of the same index leaves the file alone. */
    ASSERT_EQ(recs_snapshot_write(ix, sub, err, sizeof err), 0);
    ASSERT_EQ(stat(path, &st2), 0);
    ASSERT_EQ(st.st_ino, st2.st_ino);

    ASSERT_EQ(recs_snapshot_read(path, &back, err, sizeof err), 0);
    ASSERT_STR_EQ(back->digest, ix->digest);
    ASSERT_EQ(back->n, ix->n);
    for (int i = 0; i < ix->n; i++) {
        const recs_post_t *a = &ix->posts[i], *b = &back->posts[i];
        ASSERT_EQ(a->id, b->id);
        ASSERT_STR_EQ(a->slug, b->slug);
        ASSERT(nstr_eq(a->title, b->title));
        ASSERT(nstr_eq(a->plaintext, b->plaintext));
        ASSERT_EQ(a->published_at, b->published_at);
        ASSERT_EQ(a->ntags, b->ntags);
        for (int t = 0; t < a->ntags; t++)
            ASSERT_STR_EQ(a->tags[t], b->tags[t]);
    }
    /* What replay needs: the same answers from the snapshot as from the index. */
    for (int v = 1; v <= RECS_VERSIONS; v++) {
        recs_model_t *m1, *m2;
        ASSERT_EQ(recs_model_new(v, ix, NULL, &m1), 0);
        ASSERT_EQ(recs_model_new(v, back, NULL, &m2), 0);
        int hist[] = { 0, 3 };
        uint32_t views[4] = { 5, 0, 2, 9 };
        recs_input_t in = { hist, 2, 1, 3, 1700003600000LL, views };
        recs_item_t a[RECS_K_MAX], b[RECS_K_MAX];
        int na = recs_model_recommend(m1, &in, a), nb = recs_model_recommend(m2, &in, b);
        ASSERT_EQ(na, nb);
        ASSERT(na > 0);
        for (int i = 0; i < na; i++) {
            ASSERT_EQ(a[i].pos, b[i].pos);
            ASSERT(memcmp(&a[i].score, &b[i].score, sizeof(double)) == 0);
        }
        recs_model_free(m1);
        recs_model_free(m2);
    }
    recs_index_free(back);
    recs_index_free(ix);
    rm_rf(dir);
}

static void write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, p, n), (ssize_t)n);
    close(fd);
}

TEST(bad_snapshots_are_refused_with_a_reason)
{
    char dir[64], path[256], err[256] = "";
    recs_index_t *ix = NULL;
    tmpdir(dir, sizeof dir);

    snprintf(path, sizeof path, "%s/missing.snap", dir);
    ASSERT_EQ(recs_snapshot_read(path, &ix, err, sizeof err), -ENOENT);
    ASSERT(strstr(err, "missing.snap") != NULL);

    snprintf(path, sizeof path, "%s/junk.snap", dir);
    write_file(path, "not bson at all", 15);
    ASSERT_EQ(recs_snapshot_read(path, &ix, err, sizeof err), -EBADMSG);
    ASSERT(strstr(err, "not a content snapshot") != NULL);

    /* Valid BSON, another format. */
    bson_t b = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&b, "format", "something-else");
    write_file(path, bson_get_data(&b), b.len);
    bson_destroy(&b);
    ASSERT_EQ(recs_snapshot_read(path, &ix, err, sizeof err), -EBADMSG);

    /* A snapshot whose slugs were edited: its digest no longer matches. */
    recs_index_t *orig = small_index();
    ASSERT_EQ(recs_snapshot_write(orig, dir, err, sizeof err), 0);
    char good[256];
    recs_snapshot_path(dir, orig->digest, good, sizeof good);
    int fd = open(good, O_RDONLY);
    ASSERT(fd >= 0);
    static uint8_t buf[1 << 16];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    ASSERT(n > 0);
    uint8_t *at = memmem(buf, (size_t)n, "post-2", 6);
    ASSERT(at != NULL);
    at[5] = '9';
    snprintf(path, sizeof path, "%s/edited.snap", dir);
    write_file(path, buf, (size_t)n);
    ASSERT_EQ(recs_snapshot_read(path, &ix, err, sizeof err), -EBADMSG);
    ASSERT(strstr(err, "does not match") != NULL);

    /* A post that is not a document. */
    bson_t d = BSON_INITIALIZER, arr;
    BSON_APPEND_UTF8(&d, "format", "oneblog-recs-snapshot");
    BSON_APPEND_ARRAY_BEGIN(&d, "posts", &arr);
    BSON_APPEND_INT32(&arr, "0", 7);
    bson_append_array_end(&d, &arr);
    write_file(path, bson_get_data(&d), d.len);
    bson_destroy(&d);
    ASSERT_EQ(recs_snapshot_read(path, &ix, err, sizeof err), -EBADMSG);
    ASSERT(strstr(err, "malformed post") != NULL);

    /* Larger than RECS_SNAPSHOT_MAX (a sparse file). */
    snprintf(path, sizeof path, "%s/huge.snap", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(ftruncate(fd, (off_t)RECS_SNAPSHOT_MAX + 1), 0);
    close(fd);
    ASSERT_EQ(recs_snapshot_read(path, &ix, err, sizeof err), -EFBIG);

    /* A directory that cannot be made: a file is in the way. */
    snprintf(path, sizeof path, "%s/file", dir);
    write_file(path, "x", 1);
    snprintf(path, sizeof path, "%s/file/snapshots", dir);
    err[0] = '\0';
    ASSERT(recs_snapshot_write(orig, path, err, sizeof err) < 0);
    ASSERT(strstr(err, "mkdir") != NULL);

    recs_index_free(orig);
    rm_rf(dir);
}
