/* term.h - pids, references and the Erlang terms that messages are made of.
 *
 * Every message in libcnode is an Erlang term in the External Term Format, encoded
 * and decoded with libei (erl_interface). The same bytes are delivered to a local
 * process or, later, written to a distribution connection, so remote delivery only
 * adds a transport.
 *
 * libei's erlang_pid and erlang_ref carry the node name inline (1 KiB each), which is
 * too heavy to pass around; cn_pid_t and cn_ref_t are 16- and 24-byte values that
 * name the node by an index into the node's atom table (0 is the local node) and are
 * converted to libei's structs only at encode and decode time.
 */
#ifndef CNODE_TERM_H
#define CNODE_TERM_H

#include <stdbool.h>
#include <stdint.h>

#include <ei.h>

/* A process identifier. Compare with cn_pid_eq(); a zeroed pid is "no process". */
typedef struct cn_pid {
    uint32_t num;      /* slot in the owning node's process table */
    uint32_t serial;   /* generation of that slot: a stale pid never names a new process */
    uint32_t creation; /* the node incarnation that made it */
    uint32_t node;     /* index in the node-name table; 0 = this node */
} cn_pid_t;

/* A unique reference, as made by erlang:make_ref/0. */
typedef struct cn_ref {
    uint32_t n[3];
    uint32_t creation;
    uint32_t node; /* as in cn_pid_t */
    uint32_t len;  /* number of words of n in use (3 for our own refs) */
} cn_ref_t;

/* A decoded message: a borrowed view of one term inside a buffer. Decode it with
 * libei: `int i = t.index; ei_decode_tuple_header(t.buf, &i, &arity)` and so on. */
typedef struct cn_term {
    const char *buf; /* the whole buffer */
    int index;       /* offset of the term's first byte (after the version byte) */
    int len;         /* bytes from buf to the end of the buffer */
} cn_term_t;

static inline bool cn_pid_eq(cn_pid_t a, cn_pid_t b)
{
    return a.num == b.num && a.serial == b.serial && a.creation == b.creation &&
           a.node == b.node;
}

static inline bool cn_pid_is_nil(cn_pid_t a)
{
    return a.num == 0 && a.serial == 0 && a.creation == 0 && a.node == 0;
}

static inline bool cn_ref_eq(const cn_ref_t *a, const cn_ref_t *b)
{
    return a->n[0] == b->n[0] && a->n[1] == b->n[1] && a->n[2] == b->n[2] &&
           a->creation == b->creation && a->node == b->node;
}

/* Append a pid or a reference to a libei buffer. Return 0, -EINVAL when libei
 * refuses its node name (not UTF-8, or too long for an atom), or -ENOMEM when
 * the buffer cannot grow; on an error x keeps the term it had. Must be called
 * on a scheduler thread (the node table gives the node name). */
int cn_x_encode_pid(ei_x_buff *x, cn_pid_t pid);
int cn_x_encode_ref(ei_x_buff *x, const cn_ref_t *ref);

/* Append an atom (Latin-1, as ei_x_encode_atom takes it) to a libei buffer, in
 * one pass of libei's encoder (ei_x_encode_atom encodes twice, once to learn
 * the size), with the same bytes. Returns 0, -EINVAL (what libei refuses), or
 * -ENOMEM. */
int cn_x_encode_atom(ei_x_buff *x, const char *atom);

/* Decode a pid or a reference at *index and advance it. Return 0, -EINVAL if the
 * term is not a pid (ref), or -ENOMEM if its node name cannot be added to the
 * table. A pid of an unknown node is added to the table. */
int cn_decode_pid(const char *buf, int *index, cn_pid_t *out);
int cn_decode_ref(const char *buf, int *index, cn_ref_t *out);

/* Convenience for matching: true when the term at *index is an atom equal to
 * `atom` (Latin-1, as ei_decode_atom decodes); *index advances past the term
 * only when it matches. */
bool cn_decode_atom_is(const char *buf, int *index, const char *atom);

/* Start a message buffer, as ei_x_new_with_version() (the version byte written;
 * free with ei_x_free), with room for a small term in its first allocation.
 * Returns 0 or -ENOMEM. */
int cn_x_new(ei_x_buff *x);

/* As cn_x_new, with room for `bytes` in all (the version byte included) in one
 * allocation: for a message whose size is known ahead. Returns 0 or -ENOMEM (x
 * then holds no buffer). */
int cn_x_new_size(ei_x_buff *x, size_t bytes);

/* Make room for `bytes` more in x at once, so that encoding a term whose size is
 * known ahead does not grow the buffer piece by piece (libei grows it by what
 * each encode needs plus 100 bytes: a realloc and a copy per binary of a batch).
 * Returns 0 or -ENOMEM (x unchanged). */
int cn_x_reserve(ei_x_buff *x, size_t bytes);

/* Append the encoded term `t` (a whole term, found by skipping it) to x.
 * Returns 0, -EINVAL for a malformed term, or -ENOMEM. */
int cn_x_append_term(ei_x_buff *x, cn_term_t t);

/* Print the term at t into out (at most outlen bytes, NUL-terminated), as
 * ei_s_print_term does; for logs and tests. Returns the length or -EINVAL. */
int cn_term_print(cn_term_t t, char *out, int outlen);

#endif /* CNODE_TERM_H */
