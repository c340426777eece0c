/* dist.h - Erlang distribution: our nodes join real Erlang/Elixir clusters.
 *
 * cn_dist_start() makes a node reachable the way erl does: it listens for
 * connections, registers with EPMD (starting a built-in EPMD inside the node if
 * none answers, as erl starts epmd), and from then on sends to remote pids, links,
 * monitors and exit signals cross the wire. Connections are made on demand, on the
 * first send to a node, and are authenticated with the Erlang cookie (the version 6
 * handshake of OTP 23+). Our nodes are *hidden*: erl lists them in nodes(hidden).
 *
 *     cn_dist_opts_t d;
 *     cn_dist_opts_from_env(&d, argc, argv);     // ONEBLOG_NODE / --name, cookie ...
 *     cn_node_opts_t o = { .name = d.node_name };
 *     cn_node_new(&o, &node);
 *     if ((rc = cn_dist_start(node, &d)) < 0) ...;
 *     ... cn_node_run(node);
 *
 * Everything runs inside the node's scheduler as processes (one per connection plus
 * a writer, an acceptor, the EPMD registration and, if needed, the EPMD server), on
 * non-blocking sockets. The library does not print anything by itself: events that
 * an operator should see (a refused cookie, a lost node) go to the log callback,
 * which by default writes one line to stderr.
 *
 * Environment read by cn_dist_opts_from_env():
 *   ONEBLOG_NODE          node name, e.g. echo@127.0.0.1 (--name overrides)
 *   ONEBLOG_COOKIE        cookies, comma or newline separated (--cookie overrides)
 *   ONEBLOG_COOKIE_FILE   cookie file (default ~/.erlang.cookie, which is created
 *                         with a random cookie if missing, as erl does); one
 *                         cookie a line; refused if group/others may access it
 *   ONEBLOG_DIST_PORT     fixed listen port (default: any free port)
 *   ONEBLOG_EPMD_LESS     1: no EPMD; every peer listens on ONEBLOG_DIST_PEER_PORT
 *                         (default: our own port), like erl -erl_epmd_port
 *   ONEBLOG_NET_TICKTIME  seconds (default 60, as erl's net_ticktime)
 *   ONEBLOG_DIST_BUSY_POLL_US  busy-poll window (see busy_poll_us; 0 = off)
 *   ONEBLOG_DIST_HANDSHAKE_RATE  incoming handshakes a second per address (20)
 *   ONEBLOG_DIST_TLS      1: every distribution connection is TLS (both ways),
 *                         both sides' certificates verified against the CA, as
 *                         erl -proto_dist inet_tls; needs the three files:
 *   ONEBLOG_DIST_TLS_CERT  PEM certificate (chain) of this node
 *   ONEBLOG_DIST_TLS_KEY   PEM private key of that certificate
 *   ONEBLOG_DIST_TLS_CA    PEM CA certificate(s) a peer's certificate must chain to
 *   ERL_EPMD_PORT         EPMD port (default 4369)
 *   ONEBLOG_DIST_DEBUG    set: the default logger also prints debug lines
 */
#ifndef CNODE_DIST_H
#define CNODE_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/node.h"

enum { CN_LOG_ERROR = 0, CN_LOG_WARN, CN_LOG_INFO, CN_LOG_DEBUG };

/* One log event, one line of text without a newline. Called on the scheduler
 * thread; `msg` is borrowed for the duration of the call. */
typedef void (*cn_dist_log_cb)(void *ud, int level, const char *msg);

typedef struct cn_dist_opts {
    const char *node_name;   /* for cn_node_new; set by cn_dist_opts_from_env */
    const char *cookie;      /* cookies, comma/newline separated, first = ours;
                                NULL: $ONEBLOG_COOKIE, else the cookie file */
    const char *cookie_file; /* NULL: $ONEBLOG_COOKIE_FILE, else ~/.erlang.cookie */
    const char *listen_addr; /* NULL: the host of the node name if it is an IPv4
                                address, else 0.0.0.0 */
    int listen_port;         /* 0: any free port */
    int epmd_port;           /* 0: $ERL_EPMD_PORT, else 4369 */
    bool epmd_less;          /* don't use EPMD; peers listen on peer_port */
    int peer_port;           /* epmd_less: the peers' port; 0 = listen_port */
    bool no_builtin_epmd;    /* never start the built-in EPMD server */
    int net_ticktime_s;      /* 0: 60. A peer silent this long is down; we send a
                                tick after a quarter of it without traffic */
    int setup_timeout_ms;    /* connection set-up limit; 0: 7000 (net_setuptime) */
    size_t max_queue_bytes;  /* per-peer outgoing bytes above which sending
                                processes wait (busy_dist_port); 0: 64 MiB */
    size_t max_frame_bytes;  /* largest incoming frame; 0: 256 MiB */
    int epmd_retry_ms;       /* re-registration period after EPMD loss; 0: 1000 */
    int busy_poll_us;        /* after incoming traffic a connection keeps polling
                                its socket this long before it sleeps, as BEAM's
                                schedulers busy-wait: lower latency for some CPU
                                time; 0: 50 (or $ONEBLOG_DIST_BUSY_POLL_US),
                                < 0: never */
    int handshake_rate;      /* incoming connections (handshakes) per second
                                from one address, bursts of twice that; more
                                are closed at once. 0: 20 (or
                                $ONEBLOG_DIST_HANDSHAKE_RATE; 0 there = no
                                limit), < 0: no limit */
    bool tls;                /* every connection over TLS, mutually authenticated
                                (docs/operations.md); off: plain TCP */
    const char *tls_cert;    /* tls: PEM certificate chain of this node */
    const char *tls_key;     /* tls: PEM private key */
    const char *tls_ca;      /* tls: PEM CA certificate(s) peers must chain to */
    bool sighup_reload;      /* reload the cookies (and TLS files) on SIGHUP */
    cn_dist_log_cb log;      /* NULL: one line to stderr */
    void *log_ud;
} cn_dist_opts_t;

/* Fill *o with defaults, then the environment (see the top of this file), then
 * the options in argv: --name N, --cookie C, --cookie-file F, --dist-port P,
 * --epmd-port P, --epmd-less, --net-ticktime S. Other arguments are ignored.
 * Strings point into argv or the environment (borrowed). sighup_reload is set.
 * Returns 0, or -EINVAL for a malformed number (nothing else is checked here). */
int cn_dist_opts_from_env(cn_dist_opts_t *o, int argc, char **argv);

/* Start distribution on a node that is not running yet (call it before
 * cn_node_run, from the thread that owns the node) or from one of its processes.
 * Loads the cookies, listens, and spawns the acceptor and the EPMD registration
 * (which retries until EPMD answers, starting the built-in one when none does).
 * With opts->tls, loads the certificate, key and CA first (our certificate must
 * verify against the CA).
 * Returns 0; -EALREADY if started; -ENOENT no cookie found (or a TLS file
 * missing); -EACCES cookie file readable by others; -EINVAL unusable TLS files
 * (logged with the reason); -EADDRINUSE / other errno from listen; -ENOMEM. */
int cn_dist_start(cn_node_t *node, const cn_dist_opts_t *opts);

/* The port the node listens on (> 0), or -ENOTCONN if distribution is off. */
int cn_dist_listen_port(const cn_node_t *node);

/* Read the cookies again from the source they came from at start (explicit
 * option, $ONEBLOG_COOKIE, or the cookie file). New handshakes use the new set;
 * established connections stay. On error the old set is kept. SIGHUP does the
 * same when sighup_reload was set. Returns 0, -ENOENT, -EACCES, -ENOMEM,
 * -ENOTCONN (no distribution). Call on the node's thread. */
int cn_dist_reload_cookies(cn_node_t *node);

/* Load the TLS certificate, key and CA again from the same files. New
 * connections use them; established connections keep theirs. On error (a file
 * missing or unusable, a key that does not match, a certificate that does not
 * verify against the CA) the old ones stay and the reason is logged. SIGHUP does
 * the same when sighup_reload was set. Returns 0, -ENOENT, -EACCES, -EINVAL,
 * -ENOMEM, -ENOTCONN (no distribution), -ENOTSUP (TLS is off). Call on the
 * node's thread. */
int cn_dist_reload_tls(cn_node_t *node);

/* Where peer `node` listens, bypassing EPMD (EPMD-less set-ups). Returns 0,
 * -ENOMEM, -EINVAL, -ENOTCONN. Call on the node's thread. */
int cn_dist_set_peer_port(cn_node_t *node, const char *peer, int port);

/* From a process: connect to `node` (if not connected) and wait up to
 * timeout_ms. Returns 0 once connected, -EHOSTUNREACH if it failed, -ETIMEDOUT,
 * -EINVAL (bad name or not a process), -ENOTCONN (no distribution). */
int cn_dist_connect(const char *node, int64_t timeout_ms);

/* True if a connection to `node` is up. */
bool cn_dist_is_connected(const char *node);

/* As erlang:disconnect_node/1: close the connection to `node` (or abort its
 * set-up). Links and monitors across it fail with noconnection and node
 * watchers get {nodedown, Node}, as for any lost connection. Returns 0, or
 * -ENOTCONN if there is no connection (or no distribution). */
int cn_dist_disconnect(const char *node);

/* As erlang:monitor_node/2: with on=true the caller gets {nodedown, Node} once
 * when the connection to `node` is lost or cannot be made (a connection attempt
 * starts now if there is none); on=false removes one such request. Returns 0,
 * -EINVAL, -ENOMEM, -ENOTCONN. */
int cn_monitor_node(const char *node, bool on);

/* As net_kernel:monitor_nodes/1: while on, the caller gets {nodeup, Node} and
 * {nodedown, Node} for every peer. Returns 0, -EINVAL, -ENOMEM, -ENOTCONN. */
int cn_dist_monitor_nodes(bool on);

#endif /* CNODE_DIST_H */
