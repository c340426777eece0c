/* tokenize.c - the tokenizer of tokenize.h: a UTF-8 scanner and a small English
 * stop-word list (sorted, looked up by binary search). */
#include "recs/tokenize.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Sorted for bsearch. Common English function words: they carry no topic. */
static const char *const stopwords[] = {
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "but", "by", "can", "could", "did", "do",
    "does", "doing", "for", "from", "had", "has", "have", "having", "he", "her", "here",
    "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me", "more",
    "most", "my", "no", "not", "now", "of", "on", "one", "only", "or", "other", "our",
    "out", "over", "she", "so", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "up", "us",
    "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "why",
    "will", "with", "would", "you", "your",
};

typedef struct key {
    const char *w;
    size_t len;
} key_t_;

static int cmp_stop(const void *k, const void *e)
{
    const key_t_ *key = k;
    const char *s = *(const char *const *)e;
    size_t sl = strlen(s);
    int c = memcmp(key->w, s, key->len < sl ? key->len : sl);
    if (c)
        return c;
    return key->len < sl ? -1 : key->len > sl;
}

bool recs_stopword(const char *w, size_t len)
{
    key_t_ k = { w, len };
    return bsearch(&k, stopwords, sizeof stopwords / sizeof *stopwords, sizeof *stopwords,
                   cmp_stop) != NULL;
}

/* Decode one UTF-8 sequence at s (n bytes left). Returns its length and the code
 * point in *cp, or 0 for an invalid sequence (overlong, surrogate, > U+10FFFF). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0];
    size_t len;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, c &= 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, c &= 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, c &= 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static bool word_char(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
    if (cp >= 0xA0 && cp <= 0xBF)      /* Latin-1 punctuation and symbols */
        return false;
    if (cp >= 0x2000 && cp <= 0x206F)  /* general punctuation, spaces, dashes */
        return false;
    if (cp == 0xD7 || cp == 0xF7 || cp == 0x3000 || cp == 0xFEFF)
        return false;
    return true;
}

static size_t emit(const char *tok, size_t len, recs_token_cb cb, void *arg)
{
    if (len < 2 || recs_stopword(tok, len))
        return 0;
    cb(arg, tok, len);
    return 1;
}

size_t recs_tokenize(const char *text, size_t len, recs_token_cb cb, void *arg)
{
    const unsigned char *s = (const unsigned char *)text;
    char tok[RECS_TOKEN_MAX + 4];
    size_t tl = 0, count = 0, i = 0;

    while (i < len) {
        uint32_t cp;
        size_t n = utf8_next(s + i, len - i, &cp);
        if (n > 0 && word_char(cp)) {
            /* A longer word is cut at RECS_TOKEN_MAX, on a code point boundary. */
            if (tl + n <= RECS_TOKEN_MAX)
                for (size_t j = 0; j < n; j++)
                    tok[tl++] = (char)(n == 1 && cp >= 'A' && cp <= 'Z' ? cp + 32 : s[i + j]);
            i += n;
            continue;
        }
        if (tl)
            count += emit(tok, tl, cb, arg);
        tl = 0;
        i += n ? n : 1;
    }
    if (tl)
        count += emit(tok, tl, cb, arg);
    return count;
}
