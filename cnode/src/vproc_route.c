/* vproc_route.c - where a virtual process lives: canonical keys, hashes and
 * rendezvous (highest random weight) hashing over the nodes that offer a type.
 *
 * Rendezvous rather than a hash ring: every caller computes, for each node
 * offering the type, weight(node, key) and takes the highest. With a handful
 * of nodes that is a handful of hash mixes per call, there is no ring to keep
 * in sync, and the balance is that of the hash (no virtual nodes to tune).
 * When a node leaves, the keys it won go to their second-highest node and no
 * other key moves; when one joins, it takes only the keys it now wins
 * (tests/unit/cnode/vproc_test.c checks both).
 *
 * Keys are hashed by their canonical encoding (cn__vproc_key_canon), so the
 * same term sent by erl (which may write a list of bytes as a string, atoms in
 * any of four encodings, small integers in several) always lands on the same
 * node and the same stored row.
 */
#include "vproc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"

/* ---------------------------------------------------------------------------------
 * Canonical keys
 * ------------------------------------------------------------------------------ */

#define KEY_DEPTH_MAX 16

/* True when the list at buf[i] (after its LIST_EXT header of n elements) holds
 * only integers 0..255 and ends with [] - what erl would encode as a string. A
 * small integer sent as a SMALL_BIG_EXT counts too: canon() writes every integer
 * in its shortest form, so a list that held one would otherwise turn into a
 * string only on the second pass (not a fixed point; found by vproc_key_fuzz). */
static bool list_is_bytes(const char *buf, int i, int n)
{
    for (int k = 0; k < n; k++) {
        int type, size;
        long v;
        if (ei_get_type(buf, &i, &type, &size) < 0 ||
            (type != ERL_SMALL_INTEGER_EXT && type != ERL_INTEGER_EXT &&
             type != ERL_SMALL_BIG_EXT) ||
            ei_decode_long(buf, &i, &v) < 0 || v < 0 || v > 255)
            return false;
    }
    int type, size;
    return ei_get_type(buf, &i, &type, &size) == 0 && type == ERL_NIL_EXT;
}

static int canon(const char *buf, int *i, ei_x_buff *out, int depth, int start)
{
    int type, size, rc = -EINVAL;
    if (depth > KEY_DEPTH_MAX || ei_get_type(buf, i, &type, &size) < 0)
        return -EINVAL;
    switch (type) {
    case ERL_SMALL_INTEGER_EXT:
    case ERL_INTEGER_EXT:
    case ERL_SMALL_BIG_EXT: {
        long long v;
        unsigned long long u;
        int j = *i;
        if (ei_decode_longlong(buf, &j, &v) == 0) {
            *i = j;
            rc = ei_x_encode_longlong(out, v) < 0 ? -ENOMEM : 0;
        } else if (ei_decode_ulonglong(buf, i, &u) == 0) {
            rc = ei_x_encode_ulonglong(out, u) < 0 ? -ENOMEM : 0;
        }
        break;
    }
    case ERL_ATOM_EXT:
    case ERL_SMALL_ATOM_EXT:
    case ERL_ATOM_UTF8_EXT:
    case ERL_SMALL_ATOM_UTF8_EXT: {
        char a[MAXATOMLEN_UTF8];
        erlang_char_encoding from;
        if (ei_decode_atom_as(buf, i, a, sizeof(a), ERLANG_UTF8, &from, NULL) < 0)
            break;
        rc = ei_x_encode_atom_len_as(out, a, (int)strlen(a), ERLANG_UTF8, ERLANG_UTF8) < 0
                 ? -ENOMEM
                 : 0;
        break;
    }
    case ERL_BINARY_EXT:
    case ERL_STRING_EXT: {
        if (size > CN_VPROC_KEY_MAX)
            break;
        char *tmp = cn__malloc((size_t)size + 1);
        if (tmp == NULL)
            return -ENOMEM;
        long len = size;
        int d = type == ERL_BINARY_EXT ? ei_decode_binary(buf, i, tmp, &len)
                                       : ei_decode_string(buf, i, tmp);
        if (d == 0)
            rc = (type == ERL_BINARY_EXT ? ei_x_encode_binary(out, tmp, len)
                                         : ei_x_encode_string_len(out, tmp, size)) < 0
                     ? -ENOMEM
                     : 0;
        cn__free(tmp);
        break;
    }
    case ERL_NIL_EXT:
        if (ei_decode_list_header(buf, i, &size) == 0)
            rc = ei_x_encode_empty_list(out) < 0 ? -ENOMEM : 0;
        break;
    case ERL_LIST_EXT: {
        int n;
        if (ei_decode_list_header(buf, i, &n) < 0 || n > CN_VPROC_KEY_MAX)
            break;
        if (list_is_bytes(buf, *i, n)) {
            char tmp[CN_VPROC_KEY_MAX];
            for (int k = 0; k < n; k++) {
                long v;
                ei_decode_long(buf, i, &v);
                tmp[k] = (char)v;
            }
            ei_skip_term(buf, i); /* the [] tail */
            rc = ei_x_encode_string_len(out, tmp, n) < 0 ? -ENOMEM : 0;
            break;
        }
        if (ei_x_encode_list_header(out, n) < 0)
            return -ENOMEM;
        for (int k = 0; k < n; k++)
            if ((rc = canon(buf, i, out, depth + 1, start)) < 0)
                return rc;
        /* Proper lists only. */
        if (ei_get_type(buf, i, &type, &size) < 0 || type != ERL_NIL_EXT ||
            ei_skip_term(buf, i) < 0)
            return -EINVAL;
        rc = ei_x_encode_empty_list(out) < 0 ? -ENOMEM : 0;
        break;
    }
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT: {
        int n;
        if (ei_decode_tuple_header(buf, i, &n) < 0 || n > CN_VPROC_KEY_MAX)
            break;
        if (ei_x_encode_tuple_header(out, n) < 0)
            return -ENOMEM;
        rc = 0;
        for (int k = 0; k < n && rc == 0; k++)
            rc = canon(buf, i, out, depth + 1, start);
        break;
    }
    default:
        break;
    }
    if (rc == 0 && out->index - start > CN_VPROC_KEY_MAX)
        rc = -EINVAL;
    return rc;
}

int cn__vproc_key_canon(const char *buf, int *index, ei_x_buff *out)
{
    int start = out->index;
    int rc = canon(buf, index, out, 0, start);
    if (rc < 0)
        out->index = start;
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Hashes and rendezvous
 * ------------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t cn__vproc_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return mix64(h ^ n);
}

uint64_t cn__vproc_weight(uint64_t key_hash, const char *node)
{
    /* Both halves are already avalanched; one more mix of their XOR makes the
     * weights of one key on different nodes independent-looking. */
    return mix64(key_hash ^ cn__vproc_hash(node, strlen(node)));
}

int cn__vproc_pick(uint64_t key_hash, const char *const *nodes, int n)
{
    int best = -1;
    uint64_t bw = 0;
    for (int i = 0; i < n; i++) {
        uint64_t w = cn__vproc_weight(key_hash, nodes[i]);
        if (best < 0 || w > bw || (w == bw && strcmp(nodes[i], nodes[best]) < 0)) {
            best = i;
            bw = w;
        }
    }
    return best;
}

int cn__vproc_owner_of(cn_node_t *n, const char *service, uint64_t key_hash,
                       const char **out)
{
    cn__cluster_t *c = n->cluster;
    if (c == NULL)
        return -ENOTCONN;
    const char *best = NULL;
    uint64_t bw = 0;
    for (int i = 0; i < c->nmembers; i++) {
        const cl_member_t *m = &c->members[i];
        if (strcmp(m->service, service) != 0)
            continue;
        const char *name = cn__node_name_of(n, m->pid.node);
        uint64_t w = cn__vproc_weight(key_hash, name);
        if (best == NULL || w > bw || (w == bw && strcmp(name, best) < 0)) {
            best = name;
            bw = w;
        }
    }
    if (best == NULL)
        return -ENOENT;
    *out = best;
    return 0;
}

uint64_t cn__vproc_view_sig(cn_node_t *n, const char *service)
{
    cn__cluster_t *c = n->cluster;
    if (c == NULL)
        return 0;
    /* Order-independent: the registry's table order changes as members come
     * and go. */
    uint64_t sum = 0, x = 0, count = 0;
    for (int i = 0; i < c->nmembers; i++) {
        const cl_member_t *m = &c->members[i];
        if (strcmp(m->service, service) != 0)
            continue;
        const char *name = cn__node_name_of(n, m->pid.node);
        uint64_t h = cn__vproc_hash(name, strlen(name));
        sum += h;
        x ^= mix64(h);
        count++;
    }
    return mix64(sum ^ (x * 31) ^ count);
}
