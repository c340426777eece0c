/* dist_int.h - private structures of the distribution layer.
 *
 * Reading order: the wire constants (flags, control operations), the pure parsers
 * and builders (handshake.c, dist_frame.c, epmd.c: functions over byte buffers,
 * with no sockets, so they can be fuzzed), cookies (cookie.c), socket helpers for
 * processes (sock.c), then the state that hangs off a node: cn_dist (one per
 * node) and dist_peer (one per remote node we know of).
 */
#ifndef CNODE_DIST_INT_H
#define CNODE_DIST_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ei.h>

#include "cnode/dist.h"
#include "cnode_int.h"

/* ---------------------------------------------------------------------------------
 * Wire constants (erts/emulator/beam/dist.h, erl_dist_protocol)
 * ------------------------------------------------------------------------------ */

#define DF_PUBLISHED           0x1ULL
#define DF_EXTENDED_REFERENCES 0x4ULL
#define DF_DIST_MONITOR        0x8ULL
#define DF_FUN_TAGS            0x10ULL
#define DF_DIST_MONITOR_NAME   0x20ULL
#define DF_NEW_FUN_TAGS        0x80ULL
#define DF_EXTENDED_PIDS_PORTS 0x100ULL
#define DF_EXPORT_PTR_TAG      0x200ULL
#define DF_BIT_BINARIES        0x400ULL
#define DF_NEW_FLOATS          0x800ULL
#define DF_SMALL_ATOM_TAGS     0x4000ULL
#define DF_UTF8_ATOMS          0x10000ULL
#define DF_MAP_TAG             0x20000ULL
#define DF_BIG_CREATION        0x40000ULL
#define DF_HANDSHAKE_23        0x1000000ULL
#define DF_UNLINK_ID           0x2000000ULL
#define DF_ALIAS               (0x8ULL << 32)
#define DF_V4_NC               (0x4ULL << 32)

/* What OTP 25 insists on, plus what OTP 26 added. */
#define DF_MANDATORY                                                                   \
    (DF_EXTENDED_REFERENCES | DF_FUN_TAGS | DF_EXTENDED_PIDS_PORTS | DF_UTF8_ATOMS |  \
     DF_NEW_FUN_TAGS | DF_BIG_CREATION | DF_NEW_FLOATS | DF_MAP_TAG |                 \
     DF_EXPORT_PTR_TAG | DF_BIT_BINARIES | DF_HANDSHAKE_23 | DF_V4_NC | DF_UNLINK_ID)

/* Ours: the mandatory set, monitors by pid and by name, and aliases (ALIAS_SEND to
 * the alias of a gen_server call); PUBLISHED is left out, which makes us a hidden
 * node. No atom cache, no fragments, no exit payloads: every frame is a
 * pass-through message (112) with the reason in the control. */
#define DF_OURS                                                                        \
    (DF_MANDATORY | DF_DIST_MONITOR | DF_DIST_MONITOR_NAME | DF_SMALL_ATOM_TAGS | DF_ALIAS)

/* What we need from a peer to decode what it sends. */
#define DF_REQUIRED                                                                    \
    (DF_EXTENDED_REFERENCES | DF_EXTENDED_PIDS_PORTS | DF_UTF8_ATOMS |                \
     DF_BIG_CREATION | DF_HANDSHAKE_23)

enum {
    DOP_LINK = 1,
    DOP_SEND = 2,
    DOP_EXIT = 3,
    DOP_UNLINK = 4,
    DOP_REG_SEND = 6,
    DOP_GROUP_LEADER = 7,
    DOP_EXIT2 = 8,
    DOP_SEND_TT = 12,
    DOP_EXIT_TT = 13,
    DOP_REG_SEND_TT = 16,
    DOP_EXIT2_TT = 18,
    DOP_MONITOR_P = 19,
    DOP_DEMONITOR_P = 20,
    DOP_MONITOR_P_EXIT = 21,
    DOP_SEND_SENDER = 22,
    DOP_SEND_SENDER_TT = 23,
    DOP_ALIAS_SEND = 33,
    DOP_ALIAS_SEND_TT = 34,
    DOP_UNLINK_ID = 35,
    DOP_UNLINK_ID_ACK = 36,
};

#define DIST_PASS_THROUGH 112
#define HS_MAX 2048 /* largest handshake message we accept (bytes) */

/* ---------------------------------------------------------------------------------
 * Handshake messages (handshake.c). Pure: buffers in, structs out.
 * Each parser takes one message body (after the 2-byte length) and returns 0 or
 * -EINVAL; builders write a body into buf (cap bytes) and return its length or
 * -ENOSPC.
 * ------------------------------------------------------------------------------ */

typedef struct cn_hs_name {   /* send_name 'N' (and the challenge, which adds one) */
    uint64_t flags;
    uint32_t creation;
    uint32_t challenge;       /* challenge messages only */
    char name[256];           /* NUL-terminated, 1..255 bytes */
} cn_hs_name_t;

int cn__hs_parse_name(const uint8_t *b, size_t len, cn_hs_name_t *out);
int cn__hs_parse_challenge(const uint8_t *b, size_t len, cn_hs_name_t *out);
/* recv_status: 's' + text; out gets the text (NUL-terminated). */
int cn__hs_parse_status(const uint8_t *b, size_t len, char *out, size_t outlen);
int cn__hs_parse_reply(const uint8_t *b, size_t len, uint32_t *challenge, uint8_t digest[16]);
int cn__hs_parse_ack(const uint8_t *b, size_t len, uint8_t digest[16]);

int cn__hs_build_name(uint8_t *buf, size_t cap, uint64_t flags, uint32_t creation,
                      const char *name);
int cn__hs_build_challenge(uint8_t *buf, size_t cap, uint64_t flags, uint32_t challenge,
                           uint32_t creation, const char *name);
int cn__hs_build_status(uint8_t *buf, size_t cap, const char *status);
int cn__hs_build_reply(uint8_t *buf, size_t cap, uint32_t challenge, const uint8_t digest[16]);
int cn__hs_build_ack(uint8_t *buf, size_t cap, const uint8_t digest[16]);

/* MD5(cookie ++ decimal(challenge)). Returns 0 or -ENOMEM. */
int cn__hs_digest(const char *cookie, uint32_t challenge, uint8_t out[16]);

/* ---------------------------------------------------------------------------------
 * Frames after the handshake (dist_frame.c). Pure: a frame body (after the 4-byte
 * length) is decoded into a control message whose pids are libei's structs and
 * whose other terms are spans of the frame; converting pids to cn_pid_t and acting
 * on the message is dist_conn.c's business.
 * ------------------------------------------------------------------------------ */

typedef struct cn_dist_ctl {
    long op;                 /* DOP_* */
    erlang_pid from, to;     /* as present for op */
    bool to_is_name;         /* REG_SEND, MONITOR_P(_EXIT) by name: see `name` */
    bool from_is_name;       /* MONITOR_P_EXIT of a name monitor */
    char name[MAXATOMLEN_UTF8];
    unsigned long long id;   /* UNLINK_ID(_ACK) */
    int ref_off, ref_len;    /* MONITOR_P*, DEMONITOR_P: the encoded reference;
                                ALIAS_SEND: the alias */
    int reason_off, reason_len; /* EXIT*, MONITOR_P_EXIT: the encoded reason */
    int payload_off, payload_len; /* message (version byte first), or 0/0 */
} cn_dist_ctl_t;

/* Decode one frame body. Returns 0 and *out; 1 for a tick (len 0); -ENOTSUP for
 * a well-formed control message we do not handle; -EINVAL when malformed. */
int cn__dist_parse_frame(const char *buf, int len, cn_dist_ctl_t *out);

/* Start a frame in x: 4-byte length placeholder, pass-through byte, version.
 * The caller then encodes the control tuple. Returns 0 or -ENOMEM. */
int cn__dist_frame_begin(ei_x_buff *x);
/* cn__dist_frame_begin, then the control tuple's header (arity) and its
 * operation: the caller encodes the rest. 0, or -ENOMEM with x freed. */
int cn__dist_ctl_begin(ei_x_buff *x, int arity, long op);
/* Patch the length: the frame is x plus `extra` payload bytes sent after it. */
void cn__dist_frame_end(ei_x_buff *x, size_t extra);

/* ---------------------------------------------------------------------------------
 * EPMD messages (epmd.c). Pure parsers of requests and replies.
 * ------------------------------------------------------------------------------ */

enum {
    EPMD_ALIVE2_REQ = 120,
    EPMD_ALIVE2_RESP = 121,
    EPMD_ALIVE2_X_RESP = 118,
    EPMD_PORT_PLEASE2_REQ = 122,
    EPMD_PORT2_RESP = 119,
    EPMD_NAMES_REQ = 110,
};

typedef struct cn_epmd_req {
    int op;                   /* EPMD_* request */
    int port, type, proto, hi, lo;
    char name[256];
    const uint8_t *extra;     /* into the buffer */
    int extra_len;
} cn_epmd_req_t;

/* A request body (after its 2-byte length). 0 or -EINVAL. */
int cn__epmd_parse_req(const uint8_t *b, size_t len, cn_epmd_req_t *out);
/* A PORT2_RESP. Returns 0 and the port/versions; -ENOENT when epmd says the name
 * is not registered; -EINVAL when malformed. */
int cn__epmd_parse_port2(const uint8_t *b, size_t len, int *port, int *hi, int *lo);
/* ALIVE2_RESP / ALIVE2_X_RESP: 0 and *creation, -EADDRINUSE refused, -EINVAL. */
int cn__epmd_parse_alive2(const uint8_t *b, size_t len, uint32_t *creation);

/* From a process: ask EPMD at addr:port where `alive` listens. Returns the port
 * (> 0), -ENOENT (not registered), -ECONNREFUSED, -ETIMEDOUT, -EPROTO. */
int cn__epmd_port_please(const struct sockaddr_in *addr, int epmd_port, const char *alive,
                         int64_t timeout_ms);

/* The built-in EPMD server: bind addr:port; on success spawn its process. Returns
 * 0, -EADDRINUSE, or another negative errno. */
typedef struct cn_dist cn_dist_t;
int cn__epmd_server_start(cn_dist_t *d);
/* Free the built-in server's table (the node is being freed). */
void cn__epmd_server_free(cn_dist_t *d);
/* The registration process (keeps the ALIVE2 connection open, re-registers). */
void cn__epmd_registrar(void *arg);

/* ---------------------------------------------------------------------------------
 * Cookies (cookie.c)
 * ------------------------------------------------------------------------------ */

typedef struct cn_cookies {
    char **v;                 /* v[0] is used for outgoing handshakes */
    int n;
} cn_cookies_t;

/* Split text on commas and newlines (blanks around each cookie dropped) into
 * *out (replaced only on success). Returns 0, -ENOENT (no cookie), -ENOMEM. */
int cn__cookies_parse(const char *text, cn_cookies_t *out);
/* Load from an explicit string, else $ONEBLOG_COOKIE, else the file (NULL:
 * $ONEBLOG_COOKIE_FILE, else $HOME/.erlang.cookie, created with a random cookie
 * when missing, as erl does). err gets a reason on failure.
 * Returns 0, -ENOENT, -EACCES (file open to group/others), -ENOMEM. */
int cn__cookies_load(const char *explicit_text, const char *file, cn_cookies_t *out,
                     char *err, size_t errlen);
void cn__cookies_free(cn_cookies_t *c);

/* ---------------------------------------------------------------------------------
 * Non-blocking sockets from inside a process (sock.c). Deadlines are absolute on
 * the node clock (cn_now_ms); 0 = none.
 * ------------------------------------------------------------------------------ */

int cn__sock_listen(const char *addr, int port, int backlog, int *out_fd, int *out_port);
int cn__sock_connect(const struct sockaddr_in *sa, uint64_t deadline, int *out_fd);
int cn__sock_read_full(int fd, void *buf, size_t n, uint64_t deadline);
int cn__sock_write_full(int fd, const void *buf, size_t n, uint64_t deadline);
/* Resolve an IPv4 host name (numeric, or through getaddrinfo on a pool thread
 * when called from a process). Returns 0 or -EHOSTUNREACH. */
int cn__sock_resolve(const char *host, struct sockaddr_in *out);
/* "a.b.c.d:port" of the peer of fd (or "?"). */
void cn__sock_peer_text(int fd, char *buf, size_t len);

/* ---------------------------------------------------------------------------------
 * Transports: the byte stream of one connection, plain TCP (sock.c) or TLS over
 * it (dist_tls.c), picked when the connection is set up, so the plain path pays
 * one indirect call and nothing else for TLS being possible.
 * ------------------------------------------------------------------------------ */

typedef struct cn_dist_io cn_dist_io_t;
typedef struct cn_tls_conn cn_tls_conn_t; /* dist_tls.c */

typedef struct cn_dist_tr {
    /* Read up to n bytes: > 0 bytes read (io->drained set when the socket is
     * known to be empty now), 0 the peer closed the stream, -EAGAIN nothing now
     * (io->want says what to wait for), other -errno (io->err may hold the
     * detail). */
    ssize_t (*read)(cn_dist_io_t *io, void *buf, size_t n);
    /* Write from the iovecs: > 0 bytes taken (a prefix of them), -EAGAIN (wait
     * for io->want, then call again with iovecs that start with the same bytes),
     * other -errno. */
    ssize_t (*writev)(cn_dist_io_t *io, const struct iovec *iov, int iovcnt);
} cn_dist_tr_t;

struct cn_dist_io {
    const cn_dist_tr_t *tr;
    int fd;                  /* the TCP socket (owned by the connection) */
    int want;                /* after -EAGAIN: CN_READABLE or CN_WRITABLE */
    bool drained;            /* after a read: the socket had nothing more (a
                                further read would only say EAGAIN) */
    cn_tls_conn_t *tls;      /* TLS state (owned), or NULL */
    char err[400];           /* detail of the last failure, or "" */
};

extern const cn_dist_tr_t cn__tr_plain;

/* Initialise io as plain TCP over fd (borrowed). */
void cn__io_plain(cn_dist_io_t *io, int fd);
/* Read / write exactly n bytes through io's transport, parking as needed until
 * the deadline (absolute, node clock; 0 = none). Returns 0, -ECONNRESET (closed),
 * -ETIMEDOUT, other -errno. */
int cn__io_read_full(cn_dist_io_t *io, void *buf, size_t n, uint64_t deadline);
int cn__io_write_full(cn_dist_io_t *io, const void *buf, size_t n, uint64_t deadline);
/* After -EAGAIN: park until io->want or the timeout. Another process may wait
 * for the same event on the fd (TLS: the writer may need to read, the reader to
 * write); then sleep a millisecond instead. Returns 0, -ETIMEDOUT, -errno. */
int cn__io_wait(cn_dist_io_t *io, int64_t timeout_ms);

/* ---------------------------------------------------------------------------------
 * TLS (dist_tls.c): optional, mutual authentication against a CA.
 * ------------------------------------------------------------------------------ */

typedef struct cn_dist_tls cn_dist_tls_t;

/* Load the node's certificate chain, key and CA into *out. err gets a reason on
 * failure. Returns 0, -ENOENT (a file is missing), -EINVAL (unusable content:
 * not PEM, key does not match, certificate does not verify against the CA),
 * -ENOMEM. */
int cn__tls_new(const char *cert, const char *key, const char *ca, cn_dist_tls_t **out,
                char *err, size_t errlen);
/* Load the same files again; on success new connections use them, existing ones
 * keep theirs. On failure the old context stays. Returns as cn__tls_new. */
int cn__tls_reload(cn_dist_tls_t *t, char *err, size_t errlen);
/* One line describing the loaded certificate (subject, expiry) for logs. */
void cn__tls_describe(const cn_dist_tls_t *t, char *buf, size_t len);
void cn__tls_free(cn_dist_tls_t *t);
/* Run the TLS handshake on io (plain so far) as client or server until the
 * deadline; on success io speaks TLS. Returns 0, -EACCES (a certificate was
 * refused, by us or by the peer), -ECONNRESET, -ETIMEDOUT, -EPROTO, -ENOMEM;
 * io->err says why. */
int cn__tls_start(cn_dist_tls_t *t, cn_dist_io_t *io, bool client, uint64_t deadline);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384, peer certificate /CN=..." for logs. */
void cn__tls_conn_text(const cn_dist_io_t *io, char *buf, size_t len);
/* Free io's TLS state (the fd stays open). */
void cn__tls_io_free(cn_dist_io_t *io);

/* ---------------------------------------------------------------------------------
 * Node state
 * ------------------------------------------------------------------------------ */

enum { PEER_DOWN = 0, PEER_PENDING, PEER_UP };

typedef struct dist_link {    /* a link between a local and a remote process */
    cn_pid_t local, remote;
} dist_link_t;

typedef struct dist_mon_out { /* a local process monitors a remote one */
    cn_ref_t ref;
    cn_pid_t watcher;         /* local */
    cn_pid_t target;          /* remote pid, or nil when by name */
    char *name;               /* by name: the registered name (owned) */
} dist_mon_out_t;

typedef struct dist_mon_in {  /* a remote process monitors a local one */
    cn_pid_t target;          /* local */
    cn_pid_t watcher;         /* remote */
    char *ref;                /* the encoded reference, as the peer sent it (owned) */
    int ref_len;
    char *name;               /* by name: the name it used (owned), else NULL */
} dist_mon_in_t;

typedef struct dist_peer dist_peer_t;
struct dist_peer {
    dist_peer_t *next;
    char *name;               /* "alive@host" */
    uint32_t ix;              /* index in the node-name table */
    int state;                /* PEER_* */
    uint32_t gen;             /* bumped each time the peer goes down */
    uint32_t attempts;        /* connection attempts that ended (for waiters) */
    cn_pid_t conn;            /* the connection process owning the peer, or nil */
    cn_pid_t writer;          /* the writer process while up */
    bool outgoing;            /* conn dialled out (vs accepted) */
    int fd;                   /* socket while up, else -1 */
    cn_dist_io_t *io;         /* its transport while up (the conn's), else NULL */
    uint64_t flags;           /* the peer's distribution flags */
    uint32_t creation;        /* the peer's creation */
    char addr[64];            /* peer address for logs */

    /* outgoing queue: frames (each a cn_msg_t holding raw bytes), oldest first */
    cn_msg_t *qhead, **qtail;
    size_t qoff;              /* bytes of qhead already written */
    size_t qbytes;            /* bytes queued and not written */
    cn_pid_t *busy_waiters;   /* senders parked until qbytes falls to half the limit */
    uint32_t nbusy_waiters, capbusy_waiters;

    dist_link_t *links;
    uint32_t nlinks, caplinks;
    dist_mon_out_t *mons_out;
    uint32_t nmons_out, capmons_out;
    dist_mon_in_t *mons_in;
    uint32_t nmons_in, capmons_in;
    cn_pid_t *node_mons;      /* cn_monitor_node requests (one-shot) */
    uint32_t nnode_mons, capnode_mons;
};

typedef struct dist_port {    /* cn_dist_set_peer_port entries */
    char *name;
    int port;
} dist_port_t;

/* dist_ratelimit.c: incoming handshakes per address (token buckets). */
#define CN_DIST_RL_SLOTS 256
typedef struct cn_dist_rl_slot {
    uint8_t addr[16];            /* IPv4 in the first 4 bytes, or IPv6 */
    bool used;
    double tokens;
    uint64_t last_ms, logged_ms; /* last refill; last log line */
    uint32_t dropped;            /* refused since the last log line */
} cn_dist_rl_slot_t;
typedef struct cn_dist_rl {
    int rate;                    /* per second per address; 0 = unlimited */
    cn_dist_rl_slot_t slot[CN_DIST_RL_SLOTS];
} cn_dist_rl_t;
void cn__dist_rl_init(cn_dist_rl_t *rl, int rate);
/* May `sa` start a handshake now? Logs refusals (at most 1/s per address). */
bool cn__dist_rl_allow(cn_dist_t *d, cn_dist_rl_t *rl, const struct sockaddr *sa,
                       socklen_t len, uint64_t now_ms);

struct cn_dist {
    cn_node_t *node;
    char alive[256], host[256];  /* our name split at '@' */
    char listen_addr[256];
    int listen_fd, listen_port;
    int epmd_port, peer_port, epmd_retry_ms;
    bool epmd_less, builtin_epmd;
    int64_t tick_ms;             /* net_ticktime */
    int64_t setup_ms;
    size_t max_queue, max_frame;
    uint64_t busy_poll_ns;       /* reader's busy-poll window after traffic; 0 = off */
    cn_dist_log_cb log;
    void *log_ud;

    cn_cookies_t cookies;
    char *cookie_explicit, *cookie_file;   /* the source, for reloads */

    dist_peer_t *peers;
    cn_pid_t *node_watchers;     /* cn_dist_monitor_nodes */
    uint32_t nwatchers, capwatchers;
    dist_port_t *ports;
    uint32_t nports;
    uint64_t unlink_id;

    int epmd_srv_fd;             /* built-in EPMD listen socket, or -1 */
    void *epmd_srv;              /* its table (epmd.c) */
    int hup_rd, hup_wr;          /* SIGHUP self-pipe, or -1 */
    cn_dist_rl_t *rl;            /* handshakes per address, or NULL (unlimited) */
    cn_dist_tls_t *tls;          /* TLS for every connection, or NULL (plain TCP) */
};

/* dist.c */
cn_dist_t *cn__dist_of(cn_node_t *n);
__attribute__((format(printf, 3, 4)))
void cn__dist_log(cn_dist_t *d, int level, const char *fmt, ...);
dist_peer_t *cn__dist_peer(cn_dist_t *d, const char *name, bool create);
/* Queue frame bytes (hdr, then payload if not NULL; both consumed) for the peer and
 * wake its writer. */
void cn__dist_enqueue(cn_dist_t *d, dist_peer_t *p, cn_msg_t *hdr, cn_msg_t *payload);
/* Encode and queue a control message built by fill(x, arg) (the tuple). */
int cn__dist_send_ctl(cn_dist_t *d, dist_peer_t *p, ei_x_buff *x);
/* Wake the senders parked because p's queue was over the limit (they check the
 * queue again). Call when the queue has drained to half or the peer went down. */
void cn__dist_wake_senders(cn_dist_t *d, dist_peer_t *p);
/* The connection owning p is gone: fail links, monitors, notify watchers. */
void cn__dist_peer_down(cn_dist_t *d, dist_peer_t *p, bool was_up);
/* A MONITOR_P_EXIT for our monitor `ref` arrived: DOWN to its watcher. */
void cn__dist_deliver_down(cn_dist_t *d, dist_peer_t *p, const cn_ref_t *ref,
                           const char *reason, int len);
/* The peer is connected: notify watchers. */
void cn__dist_peer_up(cn_dist_t *d, dist_peer_t *p);
/* Start a connection attempt if the peer is down. Returns 0 or -ENOMEM. */
int cn__dist_connect_peer(cn_dist_t *d, dist_peer_t *p);
int cn__dist_peer_port_of(cn_dist_t *d, const char *name);
int cn__dist_link_add(dist_peer_t *p, cn_pid_t local, cn_pid_t remote);
bool cn__dist_link_remove(dist_peer_t *p, cn_pid_t local, cn_pid_t remote);

/* dist_conn.c */
/* Spawn the process for an accepted socket (fd is consumed) or a dial to p. */
int cn__conn_accept(cn_dist_t *d, int fd);
int cn__conn_dial(cn_dist_t *d, dist_peer_t *p);
/* The acceptor process. */
void cn__dist_acceptor(void *arg);
/* Act on one parsed frame from peer p (exposed for the frame fuzzer). Returns 0,
 * or -EINVAL for a message that must close the connection. */
int cn__dist_dispatch(cn_dist_t *d, dist_peer_t *p, const char *buf, int len,
                      const cn_dist_ctl_t *c);

#endif /* CNODE_DIST_INT_H */
