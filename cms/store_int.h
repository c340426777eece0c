/* store_int.h - what store.c and posts.c share: checked-out connections
 * (transactions) and the statement runner. Not for use outside the store.
 */
#ifndef CMS_STORE_INT_H
#define CMS_STORE_INT_H

#include "cnode/proc.h"

#include "store.h"

/* One pooled connection. */
typedef struct store_slot {
    cms_store_t *store;
    cms_conn_t *conn;  /* NULL until opened (lazily, and again after a failure) */
    bool busy;         /* checked out */
    bool dirty;        /* its holder died mid-operation: reopen before reuse */
    long on_exit;      /* the holder's cn_on_exit handle */
} store_slot_t;

/* How a statement's spans and metrics name it, worked out once when the store
 * opens (a traced read made these of the SQL text for every statement). */
typedef struct store_stmt_name {
    const char *op;         /* "SELECT": a literal (op_static) or opbuf */
    const char *sql;        /* the text, leading blanks skipped (the backend's table) */
    bool op_static;         /* op is a literal: held by spans without a copy */
    char opbuf[24];         /* an operation that is not one of the literals */
    char span[48];          /* "SELECT sqlite" */
} store_stmt_name_t;

struct cms_store {
    const cms_backend_t *be;
    const char *sys;        /* db.system.name: "sqlite" | "postgresql" */
    store_stmt_name_t names[CMS_SQL__COUNT];
    char *target;       /* directory or URL */
    int nslots;
    store_slot_t *slots;
    cn_pid_t *waiters;  /* processes waiting for a free slot */
    int nwaiters, capwaiters;
};

/* A checked-out connection with an open transaction. */
typedef struct store_tx {
    cms_store_t *s;
    store_slot_t *slot;
    bool batched;           /* inside cms_store_read_batch(): the batch's connection */
    char *err;              /* the caller's buffer, or `scratch` */
    char scratch[CMS_ERR_LEN];
} store_tx_t;

/* Check out a connection (a writer if `write`) and BEGIN. Waits up to 30 s for a
 * free connection (-ETIMEDOUT). err may be NULL. */
int store_begin(cms_store_t *s, bool write, store_tx_t *tx, char *err);
/* COMMIT when rc == 0 (returning the commit's result), else ROLLBACK (returning
 * rc); then release the connection. */
int store_end(store_tx_t *tx, int rc);

/* Run a statement in tx. out may be NULL. */
int store_run(store_tx_t *tx, int stmt, const cms_val_t *p, int n, cms_rows_t *out);

#define STORE_NARGS(...) ((int)(sizeof((cms_val_t[]){ __VA_ARGS__ }) / sizeof(cms_val_t)))
#define RUN(tx, stmt, rows, ...) \
    store_run((tx), (stmt), (cms_val_t[]){ __VA_ARGS__ }, STORE_NARGS(__VA_ARGS__), (rows))
#define RUN0(tx, stmt, rows) store_run((tx), (stmt), NULL, 0, (rows))

/* Run stmt, which takes no parameters and answers one number (a count, the
 * content version), in a read transaction of its own: *out is its first row's
 * first column. 0 or a negative code (*out untouched). */
int store_read_int(cms_store_t *s, int stmt, int64_t *out);

/* Set tx->err from a format and return code. */
int store_fail(store_tx_t *tx, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Add a path to a change (deduplicated). */
void store_change_path(cms_change_t *c, const char *path);
/* Bump the content version inside tx and mark the change visible. */
int store_bump_version(store_tx_t *tx, cms_change_t *c);

/* A JSON array text of ids, "[1,2,3]": the one way both backends take a list of
 * ids as a single bound parameter. New string. */
char *store_ids_json(const int64_t *ids, int n);

/* Fill a tag or author from row i of a result in the TC_* / AC_* column order. */
void store_tag_from_row(const cms_rows_t *r, int i, proto_tag_t *t);
void store_author_from_row(const cms_rows_t *r, int i, proto_author_t *a);

#endif /* CMS_STORE_INT_H */
