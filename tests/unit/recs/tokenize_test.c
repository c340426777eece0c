/* tokenize_test.c - recs/tokenize.c: word boundaries, ASCII lowercasing, UTF-8,
 * stop words, length limits. */
#include "test.h"

#include <string.h>

#include "common/buf.h"
#include "recs/tokenize.h"

static void collect(void *arg, const char *tok, size_t len)
{
    buf_t *b = arg;
    if (b->len)
        buf_putc(b, '|');
    buf_append(b, tok, len);
}

static char *toks(const char *s)
{
    static buf_t b;
    buf_reset(&b);
    recs_tokenize(s, strlen(s), collect, &b);
    buf_putc(&b, '\0');
    return b.data;
}

TEST(ascii_words_are_lowercased_and_split_on_punctuation)
{
    ASSERT_STR_EQ(toks("Hello, World! GenServer-calls: 42x"), "hello|world|genserver|calls|42x");
}

TEST(stop_words_and_short_tokens_are_dropped)
{
    ASSERT_STR_EQ(toks("The cost of a process is in the stack"), "cost|process|stack");
    ASSERT_STR_EQ(toks("a b c x y z"), "");
    ASSERT(recs_stopword("the", 3));
    ASSERT(!recs_stopword("then!", 5));
    ASSERT(!recs_stopword("beam", 4));
}

TEST(utf8_letters_are_words_punctuation_separates)
{
    /* "café — naïve “quoted” 東京" */
    ASSERT_STR_EQ(toks("Caf\xc3\xa9 \xe2\x80\x94 na\xc3\xafve \xe2\x80\x9cquoted\xe2\x80\x9d "
                       "\xe6\x9d\xb1\xe4\xba\xac"),
                  "caf\xc3\xa9|na\xc3\xafve|quoted|\xe6\x9d\xb1\xe4\xba\xac");
    /* Non-ASCII capitals are kept as they are (documented limit). */
    ASSERT_STR_EQ(toks("\xc3\x89T\xc3\x89"), "\xc3\x89t\xc3\x89");
}

TEST(invalid_utf8_separates_and_long_words_are_cut)
{
    ASSERT_STR_EQ(toks("ab\xff" "cd\xc0\xafz ef"), "ab|cd|ef");
    char longw[200];
    memset(longw, 'q', sizeof longw - 1);
    longw[sizeof longw - 1] = '\0';
    ASSERT_EQ(strlen(toks(longw)), (size_t)RECS_TOKEN_MAX);
}

TEST(counts_tokens)
{
    buf_t b = BUF_INIT;
    ASSERT_EQ(recs_tokenize("one two three four", 18, collect, &b), 3u);
    buf_free(&b);
}
