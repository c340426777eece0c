/* dist_frame.c - distribution frames after the handshake: parse and build.
 *
 * A frame is a 4-byte big-endian length and a body; an empty body is a tick. We
 * do not ask for the atom cache or fragments, so every body a peer sends us is a
 * pass-through message: 112, the control tuple (version byte first) and, for the
 * send operations, the message (version byte first). Decoding is libei's; but
 * libei's decoders trust their input and read past the end of a malformed buffer,
 * so before any of them runs, term_check() walks the External Term Format with
 * bounds checks (it only measures, it decodes nothing). After that, the control
 * tuple is decoded into a cn_dist_ctl_t; pure, so the fuzzer can call it.
 */
#include "dist_int.h"

#include <errno.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * Bounds check of one encoded term
 * ------------------------------------------------------------------------------ */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* An atom at b[*i] (any of the four atom tags); advances *i. */
static bool atom_check(const uint8_t *b, size_t *i, size_t len)
{
    if (*i >= len)
        return false;
    uint8_t tag = b[*i];
    size_t n;
    if (tag == 115 || tag == 119) { /* SMALL_ATOM, SMALL_ATOM_UTF8 */
        if (*i + 2 > len)
            return false;
        n = b[*i + 1];
        *i += 2;
    } else if (tag == 100 || tag == 118) { /* ATOM, ATOM_UTF8 */
        if (*i + 3 > len)
            return false;
        n = (size_t)b[*i + 1] << 8 | b[*i + 2];
        *i += 3;
    } else {
        return false;
    }
    if (n > 255 * 4 || *i + n > len)
        return false;
    *i += n;
    return true;
}

static bool terms_check(const uint8_t *b, size_t start, size_t len, uint64_t count,
                        int fun_depth, size_t *end);

/* A fun's body (after tag and size): its fixed fields, then module, OldIndex,
 * OldUniq, Pid and NumFree free variables, ending exactly at `end`. Checked to
 * the letter because libei's fun decoder leaks when it fails half-way. */
static bool fun_check(const uint8_t *b, size_t i, size_t end, int fun_depth)
{
    if (fun_depth > 8 || i + 25 > end)
        return false;
    uint32_t nfree = be32(b + i + 21);
    i += 25; /* Arity:1 Uniq:16 Index:4 NumFree:4 */
    if (!atom_check(b, &i, end))
        return false;
    for (int k = 0; k < 2; k++) { /* OldIndex, OldUniq: integers */
        if (i >= end || (b[i] != 97 && b[i] != 98))
            return false;
        i += b[i] == 97 ? 2 : 5;
    }
    if (i >= end || (b[i] != 88 && b[i] != 103))
        return false;
    size_t after;
    if (!terms_check(b, i, end, 1 + (uint64_t)nfree, fun_depth + 1, &after))
        return false;
    return after == end;
}

/* Check that a whole term starts at `start` and ends within len; *end gets the
 * offset after it. The walk is iterative (ETF is prefix order: a container only
 * adds to the count of terms still to read), so deep nesting cannot overflow the
 * stack. Rejects what libei cannot decode or we never accept: atom cache
 * references, compressed terms, old funs. */
static bool term_check(const uint8_t *b, size_t start, size_t len, size_t *end)
{
    return terms_check(b, start, len, 1, 0, end);
}

/* `count` consecutive terms; funs nest at most a few deep (fun_depth). */
static bool terms_check(const uint8_t *b, size_t start, size_t len, uint64_t count,
                        int fun_depth, size_t *end)
{
    size_t i = start;
    uint64_t todo = count;
    while (todo > 0) {
        if (i >= len || todo > len - i)
            return false; /* every pending term needs at least one byte */
        todo--;
        uint8_t tag = b[i];
        size_t need;
        switch (tag) {
        case 97: need = 2; break;                          /* SMALL_INTEGER */
        case 98: need = 5; break;                          /* INTEGER */
        case 99: need = 32; break;                         /* FLOAT (old, text) */
        case 70: need = 9; break;                          /* NEW_FLOAT */
        case 106: need = 1; break;                         /* NIL */
        case 115: case 119: case 100: case 118:
            if (!atom_check(b, &i, len))
                return false;
            continue;
        case 104:                                          /* SMALL_TUPLE */
            if (i + 2 > len)
                return false;
            todo += b[i + 1];
            i += 2;
            continue;
        case 105:                                          /* LARGE_TUPLE */
            if (i + 5 > len)
                return false;
            todo += be32(b + i + 1);
            i += 5;
            continue;
        case 116:                                          /* MAP */
            if (i + 5 > len)
                return false;
            todo += 2 * (uint64_t)be32(b + i + 1);
            i += 5;
            continue;
        case 108:                                          /* LIST: n elements + tail */
            if (i + 5 > len)
                return false;
            todo += (uint64_t)be32(b + i + 1) + 1;
            i += 5;
            continue;
        case 107:                                          /* STRING */
            if (i + 3 > len)
                return false;
            need = 3 + ((size_t)b[i + 1] << 8 | b[i + 2]);
            break;
        case 109:                                          /* BINARY */
            if (i + 5 > len)
                return false;
            need = 5 + (size_t)be32(b + i + 1);
            break;
        case 77:                                           /* BIT_BINARY */
            if (i + 6 > len || b[i + 5] < 1 || b[i + 5] > 8)
                return false; /* bits used in the last byte: 1..8 */
            need = 6 + (size_t)be32(b + i + 1);
            break;
        case 110:                                          /* SMALL_BIG */
            if (i + 3 > len)
                return false;
            need = 3 + (size_t)b[i + 1];
            break;
        case 111:                                          /* LARGE_BIG */
            if (i + 6 > len)
                return false;
            need = 6 + (size_t)be32(b + i + 1);
            break;
        case 88: case 103: case 89: case 102: case 120: { /* pids and ports */
            i++;
            if (!atom_check(b, &i, len))
                return false;
            need = tag == 88 ? 12 : tag == 103 ? 9 : tag == 89 ? 8 : tag == 102 ? 5 : 12;
            if (i + need > len)
                return false;
            i += need;
            continue;
        }
        case 90: case 114: {                               /* NEWER/NEW_REFERENCE */
            if (i + 3 > len)
                return false;
            size_t words = (size_t)b[i + 1] << 8 | b[i + 2];
            if (words == 0 || words > 5)
                return false;
            i += 3;
            if (!atom_check(b, &i, len))
                return false;
            need = (tag == 90 ? 4 : 1) + 4 * words;
            if (i + need > len)
                return false;
            i += need;
            continue;
        }
        case 101:                                          /* REFERENCE (old) */
            i++;
            if (!atom_check(b, &i, len) || i + 5 > len)
                return false;
            i += 5;
            continue;
        case 113:                                          /* EXPORT: M, F, Arity */
            i++;
            if (!atom_check(b, &i, len) || !atom_check(b, &i, len) || i + 2 > len ||
                b[i] != 97)
                return false;
            i += 2;
            continue;
        case 112:                                          /* NEW_FUN: sized */
            if (i + 5 > len)
                return false;
            need = 1 + (size_t)be32(b + i + 1);
            if (need < 5 || need > len - i || !fun_check(b, i + 5, i + need, fun_depth))
                return false;
            break;
        default:
            return false;
        }
        if (need > len - i)
            return false;
        i += need;
    }
    *end = i;
    return true;
}

/* ---------------------------------------------------------------------------------
 * Control messages
 * ------------------------------------------------------------------------------ */

/* A term that is skipped (Unused, TraceToken) or kept as a span (Ref, Reason). */
static bool span(const char *buf, int *i, int *off, int *len)
{
    int start = *i;
    if (ei_skip_term(buf, i) < 0)
        return false;
    if (off) {
        *off = start;
        *len = *i - start;
    }
    return true;
}

/* ToProc / FromProc of the monitor messages: a pid or an atom. */
static bool pid_or_name(const char *buf, int *i, erlang_pid *pid, char *name, bool *is_name)
{
    int type, size;
    if (ei_get_type(buf, i, &type, &size) < 0)
        return false;
    if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT || type == ERL_ATOM_UTF8_EXT ||
        type == ERL_SMALL_ATOM_UTF8_EXT) {
        *is_name = true;
        return ei_decode_atom(buf, i, name) == 0;
    }
    *is_name = false;
    return ei_decode_pid(buf, i, pid) == 0;
}

int cn__dist_parse_frame(const char *buf, int len, cn_dist_ctl_t *out)
{
    const uint8_t *b = (const uint8_t *)buf;
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return 1;
    if (len < 3 || b[0] != DIST_PASS_THROUGH || b[1] != 131)
        return -EINVAL;
    size_t cend, pend;
    if (!term_check(b, 2, (size_t)len, &cend))
        return -EINVAL;
    if (cend < (size_t)len) {
        if (b[cend] != 131 || !term_check(b, cend + 1, (size_t)len, &pend) ||
            pend != (size_t)len)
            return -EINVAL;
        out->payload_off = (int)cend;
        out->payload_len = len - (int)cend;
    }

    int i = 2, arity;
    long op;
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity < 1 ||
        ei_decode_long(buf, &i, &op) < 0)
        return -EINVAL;
    out->op = op;
    bool ok;
    bool needs_payload = false;
    switch (op) {
    case DOP_LINK:
    case DOP_UNLINK:
        ok = arity == 3 && ei_decode_pid(buf, &i, &out->from) == 0 &&
             ei_decode_pid(buf, &i, &out->to) == 0;
        break;
    case DOP_SEND:
    case DOP_SEND_TT:
        ok = arity == (op == DOP_SEND ? 3 : 4) && span(buf, &i, NULL, NULL) &&
             ei_decode_pid(buf, &i, &out->to) == 0;
        out->op = DOP_SEND;
        needs_payload = true;
        break;
    case DOP_SEND_SENDER:
    case DOP_SEND_SENDER_TT:
        ok = arity == (op == DOP_SEND_SENDER ? 3 : 4) && ei_decode_pid(buf, &i, &out->from) == 0 &&
             ei_decode_pid(buf, &i, &out->to) == 0;
        out->op = DOP_SEND;
        needs_payload = true;
        break;
    case DOP_REG_SEND:
    case DOP_REG_SEND_TT:
        ok = arity == (op == DOP_REG_SEND ? 4 : 5) && ei_decode_pid(buf, &i, &out->from) == 0 &&
             span(buf, &i, NULL, NULL) && ei_decode_atom(buf, &i, out->name) == 0;
        out->to_is_name = true;
        out->op = DOP_REG_SEND;
        needs_payload = true;
        break;
    case DOP_EXIT:
    case DOP_EXIT2:
    case DOP_EXIT_TT:
    case DOP_EXIT2_TT: {
        bool tt = op == DOP_EXIT_TT || op == DOP_EXIT2_TT;
        ok = arity == (tt ? 5 : 4) && ei_decode_pid(buf, &i, &out->from) == 0 &&
             ei_decode_pid(buf, &i, &out->to) == 0 && (!tt || span(buf, &i, NULL, NULL)) &&
             span(buf, &i, &out->reason_off, &out->reason_len);
        out->op = (op == DOP_EXIT || op == DOP_EXIT_TT) ? DOP_EXIT : DOP_EXIT2;
        break;
    }
    case DOP_MONITOR_P:
    case DOP_DEMONITOR_P:
        ok = arity == 4 && ei_decode_pid(buf, &i, &out->from) == 0 &&
             pid_or_name(buf, &i, &out->to, out->name, &out->to_is_name) &&
             span(buf, &i, &out->ref_off, &out->ref_len);
        break;
    case DOP_MONITOR_P_EXIT:
        ok = arity == 5 && pid_or_name(buf, &i, &out->from, out->name, &out->from_is_name) &&
             ei_decode_pid(buf, &i, &out->to) == 0 &&
             span(buf, &i, &out->ref_off, &out->ref_len) &&
             span(buf, &i, &out->reason_off, &out->reason_len);
        break;
    case DOP_ALIAS_SEND:
    case DOP_ALIAS_SEND_TT: {
        /* {33, FromPid, Alias} / {34, FromPid, Alias, Token} */
        int j, type, size;
        ok = arity == (op == DOP_ALIAS_SEND ? 3 : 4) &&
             ei_decode_pid(buf, &i, &out->from) == 0 && (j = i, true) &&
             ei_get_type(buf, &j, &type, &size) == 0 &&
             (type == ERL_NEW_REFERENCE_EXT || type == ERL_NEWER_REFERENCE_EXT) &&
             span(buf, &i, &out->ref_off, &out->ref_len);
        out->op = DOP_ALIAS_SEND;
        needs_payload = true;
        break;
    }
    case DOP_UNLINK_ID:
    case DOP_UNLINK_ID_ACK:
        ok = arity == 4 && ei_decode_ulonglong(buf, &i, &out->id) == 0 &&
             ei_decode_pid(buf, &i, &out->from) == 0 && ei_decode_pid(buf, &i, &out->to) == 0;
        break;
    default:
        return -ENOTSUP; /* GROUP_LEADER, spawn requests, ...: ignored */
    }
    if (!ok || (needs_payload && out->payload_len == 0))
        return -EINVAL;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Building frames
 * ------------------------------------------------------------------------------ */

int cn__dist_frame_begin(ei_x_buff *x)
{
    static const char head[5] = { 0, 0, 0, 0, (char)DIST_PASS_THROUGH };
    if (ei_x_new(x) < 0)
        return -ENOMEM;
    if (ei_x_append_buf(x, head, 5) < 0 || ei_x_encode_version(x) < 0) {
        ei_x_free(x);
        return -ENOMEM;
    }
    return 0;
}

int cn__dist_ctl_begin(ei_x_buff *x, int arity, long op)
{
    if (cn__dist_frame_begin(x) < 0)
        return -ENOMEM;
    if (ei_x_encode_tuple_header(x, arity) < 0 || ei_x_encode_long(x, op) < 0) {
        ei_x_free(x);
        return -ENOMEM;
    }
    return 0;
}

void cn__dist_frame_end(ei_x_buff *x, size_t extra)
{
    uint32_t n = (uint32_t)((size_t)x->index - 4 + extra);
    uint8_t *p = (uint8_t *)x->buff;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
}
