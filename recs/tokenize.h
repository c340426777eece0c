/* tokenize.h - words out of UTF-8 text for the TF-IDF model.
 *
 * A token is a maximal run of word characters: ASCII letters and digits, and every
 * non-ASCII code point except the punctuation and spaces of U+00A0..U+00BF and
 * U+2000..U+206F (so "café" and "東京" are words, "—" and "“" separate them).
 * ASCII letters are lowercased; other letters are kept as they are (no Unicode
 * case folding: a deliberate, documented limit of recs@1 and recs@2, since
 * changing it changes their output). Tokens shorter than 2 bytes, longer than
 * RECS_TOKEN_MAX bytes (truncated there) or in the stop-word list are dropped.
 * Invalid UTF-8 bytes separate tokens.
 */
#ifndef ONEBLOG_RECS_TOKENIZE_H
#define ONEBLOG_RECS_TOKENIZE_H

#include <stdbool.h>
#include <stddef.h>

#define RECS_TOKEN_MAX 64 /* bytes */

/* Called once per token; `tok` (len bytes, not NUL-terminated) is borrowed. */
typedef void (*recs_token_cb)(void *arg, const char *tok, size_t len);

/* Tokenize text[0..len). Returns the number of tokens reported. */
size_t recs_tokenize(const char *text, size_t len, recs_token_cb cb, void *arg);

/* True if the lowercase word w[0..len) is a stop word. */
bool recs_stopword(const char *w, size_t len);

#endif /* ONEBLOG_RECS_TOKENIZE_H */
