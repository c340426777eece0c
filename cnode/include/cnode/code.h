/* code.h - gen_server callbacks in shared objects, and hot code upgrades.
 *
 * A *module* is a gen_server's callbacks with a name and a version, either linked
 * into the binary or built as a shared object that exports one function,
 * cn_module_info(), returning its descriptor:
 *
 *     static const cn_gen_server_t cb = { .init = ..., .code_change = ... };
 *     static const cn_module_t mod = { CN_MODULE_ABI, sizeof(cn_module_t),
 *                                      "counter", "2", &cb };
 *     CN_MODULE_DEFINE(mod)
 *
 * built with `-fPIC -fvisibility=hidden -shared` (only cn_module_info is exported;
 * everything else binds inside the object, so the new code never calls into the
 * old). The object calls libcnode (and whatever else the host exports: the host
 * binary is linked with a --dynamic-list); it is loaded with RTLD_NOW, so an
 * undefined symbol fails the load, not a later call.
 *
 * An upgrade (cn_code_upgrade, or `oneblog-ctl upgrade NODE NAME FILE.so` through
 * the `cn_code` server below), in the order OTP's release handler uses:
 *   1. load and check the file (path, owner, mode, ABI, module name) - the server
 *      is not touched if anything is wrong;
 *   2. suspend the server (sys:suspend: it finishes the message in hand; calls that
 *      arrive from now on wait in its mailbox);
 *   3. the NEW module's code_change(OldVsn, &State, Extra) runs in the server; on
 *      success the server's callbacks become the new module's, on failure the old
 *      ones and the old state stay, and the reason is reported;
 *   4. resume: the queued calls are served, by the new code, within their own
 *      timeouts. No call is lost or failed.
 * A downgrade is the same operation with the older file.
 *
 * Limits (docs/hot-upgrade.md says more): a crash in new code kills the node, as
 * any C crash does; the state's layout is an ABI between versions that the
 * modules' code_change must check; loaded objects are never unloaded while the
 * node runs (processes spawned by old code, exit hooks and function pointers in
 * the state may still point into it), so each distinct file loaded stays mapped
 * until the node is freed; a file is identified by its path *and* inode, and a
 * file replaced in place under a path already loaded is refused (the dynamic
 * loader would hand back the old copy): give every build its own file name.
 *
 * Loading is code execution on the node. The distribution cookie already grants
 * that; the loader adds: absolute paths only, a regular file and its directory
 * owned by root or the node's user and writable by no one else, and (when set)
 * inside the node's code directory (cn_code_opts_t.dir, ONEBLOG_CODE_DIR).
 */
#ifndef CNODE_CODE_H
#define CNODE_CODE_H

#include <stddef.h>
#include <stdint.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"

/* Bump when cn_module_t or cn_gen_server_t changes layout or meaning. */
#define CN_MODULE_ABI 1
#define CN_MODULE_SYMBOL "cn_module_info"
#define CN_CODE_ERR_LEN 256

typedef struct cn_module {
    uint32_t abi;                      /* CN_MODULE_ABI as the module was built */
    uint32_t size;                     /* sizeof(cn_module_t) as the module was built */
    const char *name;                  /* a server changes only to a module of its name */
    const char *vsn;                   /* shown by upgrades, passed as OldVsn */
    const cn_gen_server_t *callbacks;
} cn_module_t;

/* In a module's source: export `desc` (a cn_module_t) as the module's entry. */
#define CN_MODULE_DEFINE(desc)                                                       \
    __attribute__((visibility("default"))) const cn_module_t *cn_module_info(void); \
    const cn_module_t *cn_module_info(void) { return &(desc); }

typedef struct cn_code_opts {
    const char *dir;  /* load only files inside this directory; NULL = $ONEBLOG_CODE_DIR
                         if set, else any path that passes the owner and mode checks */
} cn_code_opts_t;

/* Start the node's code server, registered as `cn_code` (from a process or before
 * cn_node_run). It answers gen_server calls:
 *   {upgrade, Name, Path}        -> {ok, OldVsn, NewVsn, SuspendedUs} | {error, Why}
 *   {upgrade, Name, Path, Extra} -> the same, Extra passed to code_change
 *   {which, Name}                -> {ok, Module, Vsn} | {error, Why}
 *   modules                      -> {ok, [{Module, Vsn, Path}]} (files loaded)
 * Name and Path are binaries (or atoms); OldVsn, NewVsn, Module, Vsn and Why are
 * binaries. Also sets the code directory of cn_code_load. Returns 0, -EEXIST (a
 * code server runs already), -ENOMEM. */
int cn_code_start(cn_node_t *node, const cn_code_opts_t *opts);

/* Load the module in the shared object at `path` and check it: absolute path,
 * owner and mode, inside the code directory if one is set, the file loads with
 * every symbol resolved, exports cn_module_info, the descriptor's ABI. From a
 * process (the file work runs on the blocking pool). Loading a file already
 * loaded (same path, same inode) returns the same descriptor. Returns 0 and *out
 * (valid until the node is freed), or a negative code with the reason in err
 * (may be NULL): -EINVAL (path, ABI), -EPERM (owner, mode, directory), -ENOENT,
 * -ENOEXEC (not loadable, no entry), -ESTALE (the file changed under a loaded
 * path), -ENOMEM. */
int cn_code_load(const char *path, const cn_module_t **out, char *err, size_t errlen);

/* Start a gen_server from a module (cn_gen_server_start with mod->callbacks);
 * the server remembers the module, which makes it upgradable. */
int cn_gen_server_start_module(cn_node_t *node, const cn_module_t *mod, void *arg,
                               const cn_gen_server_opts_t *opts, cn_pid_t *out);

/* The module a server of this module name should (re)start with on this node:
 * the one the last successful upgrade installed, or the one given to
 * cn_code_set_current, else NULL. A supervisor's start function asks this, so a
 * restart after an upgrade keeps the new version. From a process of the node. */
const cn_module_t *cn_code_current(const char *name);
int cn_code_set_current(const cn_module_t *mod); /* 0, -ENOMEM, -EINVAL */

typedef struct cn_code_result {
    char old_vsn[64], new_vsn[64];
    int64_t suspended_us;          /* from the suspend's reply to the resume's */
    char err[CN_CODE_ERR_LEN];     /* why, on failure */
} cn_code_result_t;

/* Upgrade (or downgrade) the local server registered as `name` to the module in
 * `path`, as described above. `extra` (may be NULL; consumed) is passed to
 * code_change (default []). timeout_ms bounds each step (suspend, code_change,
 * resume). From a process. Returns 0 with res->old_vsn/new_vsn, or a negative
 * code with res->err: a load error (cn_code_load); -ESRCH (no such server);
 * -EINVAL (`name` is the caller itself); -ECANCELED (the server refused the
 * change and keeps its version: its code_change failed, the file holds another
 * module's name, or the server was not started from a module - res->err says
 * which); -ETIMEDOUT (a step timed out; a code_change still running may yet
 * complete: ask cn_code_which); -ENOMEM. The server is resumed on every path
 * that may have suspended it, a suspend that timed out included. */
int cn_code_upgrade(const char *name, const char *path, ei_x_buff *extra,
                    int64_t timeout_ms, cn_code_result_t *res);

/* The module and vsn a local server runs: 0 and copies, -ESRCH, -EINVAL (no
 * module), -ETIMEDOUT. From a process. */
int cn_code_which(const char *name, char *module, size_t mlen, char *vsn, size_t vlen,
                  int64_t timeout_ms);

#endif /* CNODE_CODE_H */
