/* term.c - pids and references in the External Term Format, via libei.
 *
 * libei does the encoding; this file converts between our compact cn_pid_t/cn_ref_t
 * and libei's erlang_pid/erlang_ref, whose node names live in the node's table of
 * node names (index 0 is the local node).
 */
#include "cnode_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int cn__node_name_index(cn_node_t *n, const char *name, uint32_t *out)
{
    for (uint32_t i = 0; i < n->nnode_names; i++) {
        if (strcmp(n->node_names[i], name) == 0) {
            *out = i;
            return 0;
        }
    }
    if (n->nnode_names == n->capnode_names) {
        uint32_t cap = n->capnode_names ? n->capnode_names * 2 : 8;
        char **names = cn__realloc(n->node_names, cap * sizeof(*names));
        if (names == NULL)
            return -ENOMEM;
        n->node_names = names;
        n->capnode_names = cap;
    }
    size_t len = strlen(name);
    char *copy = cn__malloc(len + 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, name, len + 1);
    n->node_names[n->nnode_names] = copy;
    *out = n->nnode_names++;
    return 0;
}

const char *cn__node_name_of(cn_node_t *n, uint32_t ix)
{
    return ix < n->nnode_names ? n->node_names[ix] : "nonode@nohost";
}

void cn__node_names_free(cn_node_t *n)
{
    for (uint32_t i = 0; i < n->nnode_names; i++)
        cn__free(n->node_names[i]);
    cn__free(n->node_names);
    n->node_names = NULL;
    n->nnode_names = n->capnode_names = 0;
}

int cn__encode_atom(const char *atom, char **out, int *outlen)
{
    int len = 0;
    *out = NULL;
    *outlen = 0;
    if (ei_encode_atom(NULL, &len, atom) < 0)
        return -EINVAL;
    char *buf = cn__malloc((size_t)len);
    if (buf == NULL)
        return -ENOMEM;
    int i = 0;
    ei_encode_atom(buf, &i, atom);
    *out = buf;
    *outlen = len;
    return 0;
}

/* libei's encoders (x_fix_buff) grow a buffer, by a realloc, whenever fewer
 * than this many bytes would stay free after what they write: a buffer sized
 * exactly for its term is grown once more as it is filled. */
#define EI_X_SLACK 100

int cn_x_new(ei_x_buff *x)
{
    /* Not ei_x_new_with_version: its buffer is 100 bytes, less than libei's
     * own slack, so the first encode into it always reallocated (and the
     * small terms most messages are were a malloc and a realloc each). 256
     * bytes in all hold a term of up to 155 in one allocation. */
    return cn_x_new_size(x, 256 - EI_X_SLACK);
}

int cn_x_new_size(ei_x_buff *x, size_t bytes)
{
    /* As ei_x_new_with_version, but one malloc of the final size: libei starts
     * every buffer at 100 bytes, so a message of known size was a malloc and a
     * realloc (with a copy) where one allocation does. libei frees it with
     * free() (ei_x_free), as cn_x_reserve's realloc assumes too. */
    if (bytes < 1 || bytes > INT_MAX - EI_X_SLACK) {
        x->buff = NULL;
        return -ENOMEM;
    }
    bytes += EI_X_SLACK;
    x->buff = malloc(bytes);
    if (x->buff == NULL)
        return -ENOMEM;
    x->buffsz = (int)bytes;
    x->index = 0;
    return ei_x_encode_version(x) < 0 ? -ENOMEM : 0;
}

int cn_x_reserve(ei_x_buff *x, size_t bytes)
{
    if (bytes > INT_MAX)
        return -ENOMEM; /* before the sum below can wrap around */
    size_t need = (size_t)x->index + bytes + EI_X_SLACK;
    if (need <= (size_t)x->buffsz)
        return 0;
    if (need > INT_MAX)
        return -ENOMEM;
    char *b = realloc(x->buff, need); /* libei's buffers are malloc'd (ei_x_free frees) */
    if (b == NULL)
        return -ENOMEM;
    x->buff = b;
    x->buffsz = (int)need;
    return 0;
}

/* libei's view of a pid or a ref, the node name from the node's table; returns
 * the name's length. */
static size_t to_erlang_pid(cn_pid_t pid, erlang_pid *ep)
{
    cn_node_t *n = cn__cur_node;
    const char *node = n ? cn__node_name_of(n, pid.node) : "nonode@nohost";
    size_t len = strlen(node);
    memcpy(ep->node, node, len + 1);
    ep->num = pid.num;
    ep->serial = pid.serial;
    ep->creation = pid.creation;
    return len;
}

static size_t to_erlang_ref(const cn_ref_t *ref, erlang_ref *er)
{
    cn_node_t *n = cn__cur_node;
    const char *node = n ? cn__node_name_of(n, ref->node) : "nonode@nohost";
    size_t len = strlen(node);
    memcpy(er->node, node, len + 1);
    er->len = (int)(ref->len ? ref->len : 3);
    if (er->len > 3)
        er->len = 3;
    er->n[0] = ref->n[0];
    er->n[1] = ref->n[1];
    er->n[2] = ref->n[2];
    er->n[3] = er->n[4] = 0;
    er->creation = ref->creation;
    return len;
}

int cn__encode_pid(char *buf, int *index, cn_pid_t pid)
{
    erlang_pid ep;
    to_erlang_pid(pid, &ep);
    return ei_encode_pid(buf, index, &ep) < 0 ? -EINVAL : 0;
}

int cn__encode_ref(char *buf, int *index, const cn_ref_t *ref)
{
    erlang_ref er;
    to_erlang_ref(ref, &er);
    return ei_encode_ref(buf, index, &er) < 0 ? -EINVAL : 0;
}

int cn_x_encode_pid(ei_x_buff *x, cn_pid_t pid)
{
    erlang_pid ep;
    size_t len = to_erlang_pid(pid, &ep);
    /* Room first, then one pass of libei's encoder: ei_x_encode_pid encodes
     * twice (once to learn the size), and the node name's atom conversion is
     * most of the work. 16 bytes and the name, twice its length at most as
     * UTF-8. */
    if (cn_x_reserve(x, 16 + 2 * len) < 0)
        return -ENOMEM;
    /* libei refuses a node name that is not UTF-8 or too long for an atom: the
     * caller's input, not memory. It has counted the pid's tag by then, hence
     * the index of our own, so that x keeps the term it had. */
    int i = x->index;
    if (ei_encode_pid(x->buff, &i, &ep) < 0)
        return -EINVAL;
    x->index = i;
    return 0;
}

int cn_x_encode_atom(ei_x_buff *x, const char *atom)
{
    /* As ei_x_encode_atom, in one pass of the encoder (see cn_x_encode_pid):
     * 3 bytes of header, the name at most twice as long in UTF-8. */
    size_t len = strlen(atom);
    if (len >= MAXATOMLEN)
        return -EINVAL; /* as libei's check (ei_encode_atom would cut it) */
    if (cn_x_reserve(x, 3 + 2 * len) < 0)
        return -ENOMEM;
    return ei_encode_atom_len_as(x->buff, &x->index, atom, (int)len, ERLANG_LATIN1,
                                 ERLANG_UTF8) < 0 ? -EINVAL : 0;
}

int cn_x_encode_ref(ei_x_buff *x, const cn_ref_t *ref)
{
    erlang_ref er;
    size_t len = to_erlang_ref(ref, &er);
    /* One pass, as cn_x_encode_pid: 3 + 4 + 4 x 3 bytes and the name. */
    if (cn_x_reserve(x, 24 + 2 * len) < 0)
        return -ENOMEM;
    int i = x->index; /* as in cn_x_encode_pid */
    if (ei_encode_ref(x->buff, &i, &er) < 0)
        return -EINVAL;
    x->index = i;
    return 0;
}

int cn_decode_pid(const char *buf, int *index, cn_pid_t *out)
{
    cn_node_t *n = cn__cur_node;
    erlang_pid ep;
    int i = *index;
    if (ei_decode_pid(buf, &i, &ep) < 0)
        return -EINVAL;
    uint32_t ix = 0;
    if (n && cn__node_name_index(n, ep.node, &ix) < 0)
        return -ENOMEM;
    out->num = ep.num;
    out->serial = ep.serial;
    out->creation = ep.creation;
    out->node = ix;
    *index = i;
    return 0;
}

int cn_decode_ref(const char *buf, int *index, cn_ref_t *out)
{
    cn_node_t *n = cn__cur_node;
    erlang_ref er;
    int i = *index;
    if (ei_decode_ref(buf, &i, &er) < 0)
        return -EINVAL;
    uint32_t ix = 0;
    if (n && cn__node_name_index(n, er.node, &ix) < 0)
        return -ENOMEM;
    memset(out, 0, sizeof(*out));
    /* Refs longer than 3 words (OTP 24+ may use 5) keep their first 3 words, which
     * is where BEAM puts the counter; only refs we made ourselves are compared. */
    out->len = (uint32_t)(er.len > 3 ? 3 : er.len);
    for (uint32_t k = 0; k < out->len; k++)
        out->n[k] = er.n[k];
    out->creation = er.creation;
    out->node = ix;
    *index = i;
    return 0;
}

/* The slow path of cn_decode_atom_is: libei decodes the atom (converting it
 * between Latin-1 and UTF-8) into a buffer the size of the longest atom. Kept
 * out of line so its 1 KB buffer is not in the frame of every caller. */
static __attribute__((noinline)) bool atom_is_decoded(const char *buf, int *index,
                                                       const char *atom)
{
    char a[MAXATOMLEN_UTF8];
    int i = *index;
    if (ei_decode_atom(buf, &i, a) < 0 || strcmp(a, atom) != 0)
        return false;
    *index = i;
    return true;
}

bool cn_decode_atom_is(const char *buf, int *index, const char *atom)
{
    /* Every gen_server message is matched against atoms ('$gen_call', alias,
     * ok...), and libei's decode was the costliest part of a local call (the
     * conversion and its checks: ~350 instructions an atom under callgrind,
     * about a tenth of a call). An ASCII atom is the same bytes in all four
     * atom encodings (Latin-1 or UTF-8, 1- or 2-byte length), so it is
     * compared where it lies; anything else goes through libei. */
    const unsigned char *p = (const unsigned char *)buf + *index;
    const unsigned char *a = (const unsigned char *)atom;
    size_t len, hdr;
    switch (p[0]) {
    case ERL_SMALL_ATOM_EXT:
    case ERL_SMALL_ATOM_UTF8_EXT:
        len = p[1];
        hdr = 2;
        break;
    case ERL_ATOM_EXT:
    case ERL_ATOM_UTF8_EXT:
        len = (size_t)p[1] << 8 | p[2];
        hdr = 3;
        break;
    default:
        return false; /* not an atom (libei would say so too) */
    }
    /* One pass: while the name is ASCII and equal to the bytes, go on. A
     * differing ASCII character, or a name that ends first or goes on after
     * the bytes, cannot match however the bytes decode (ASCII decodes to
     * itself, anything else to a non-ASCII character); a non-ASCII character
     * in the name needs libei's decode. */
    for (size_t k = 0; k < len; k++) {
        if (a[k] >= 0x80) /* libei's string ends at a NUL byte of the atom */
            return memchr(p + hdr, 0, len) == NULL && atom_is_decoded(buf, index, atom);
        if (a[k] != p[hdr + k] || a[k] == '\0')
            return false; /* the name ended first (an atom may hold a NUL) */
    }
    if (a[len] != '\0')
        return false; /* the name goes on */
    *index += (int)(hdr + len);
    return true;
}

int cn_x_append_term(ei_x_buff *x, cn_term_t t)
{
    int end = t.index;
    if (ei_skip_term(t.buf, &end) < 0 || end > t.len)
        return -EINVAL;
    return ei_x_append_buf(x, t.buf + t.index, end - t.index) < 0 ? -ENOMEM : 0;
}

int cn_term_print(cn_term_t t, char *out, int outlen)
{
    char *s = NULL;
    int i = t.index;
    if (outlen <= 0)
        return -EINVAL;
    if (ei_s_print_term(&s, t.buf, &i) < 0) {
        free(s);
        return -EINVAL;
    }
    size_t len = strlen(s);
    if (len >= (size_t)outlen)
        len = (size_t)outlen - 1;
    memcpy(out, s, len);
    out[len] = '\0';
    free(s);
    return (int)len;
}
