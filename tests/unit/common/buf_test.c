/* buf_test.c - the growable buffer: HTML escaping (8 bytes at a time) against a
 * byte-by-byte reference over random text with entities at every offset. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "../../../common/buf.h"

static void reference_html(buf_t *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '&': buf_puts(b, "&amp;"); break;
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        case '\'': buf_puts(b, "&#39;"); break;
        default: buf_putc(b, s[i]); break;
        }
    }
}

TEST(html_escaping_matches_the_reference)
{
    static const char alphabet[] = "abc &<>\"'\xc3\xa9\x80\xff\x26\x3c";
    unsigned seed = 11;
    char s[200];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(seed >> 8) % sizeof s;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly plain letters, so that clean 8-byte runs and hits mix */
            unsigned r = seed >> 16;
            s[i] = r % 4 ? (char)('a' + r % 26) : alphabet[r % (sizeof alphabet - 1)];
        }
        seed = seed * 1103515245u + 12345u;
        buf_t got = BUF_INIT, want = BUF_INIT;
        buf_puts(&got, "x");
        buf_puts(&want, "x");
        buf_append_html(&got, s, len);
        reference_html(&want, s, len);
        ASSERT_EQ(got.len, want.len);
        ASSERT_EQ(memcmp(got.data, want.data, got.len), 0);
        ASSERT_EQ(got.data[got.len], '\0');
        buf_free(&got);
        buf_free(&want);
    }
    /* an entity at each offset of a long clean run */
    for (size_t at = 0; at < 40; at++) {
        char t[41];
        memset(t, 'a', 40);
        t[40] = '\0';
        t[at] = '<';
        buf_t got = BUF_INIT;
        buf_append_html(&got, t, 40);
        ASSERT_EQ(got.len, 43);
        ASSERT_EQ(memcmp(got.data + at, "&lt;", 4), 0);
        buf_free(&got);
    }
}
