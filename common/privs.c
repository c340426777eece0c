/* privs.c - giving up root at start-up (see privs.h). */
#include "privs.h"

#include <errno.h>
#include <stdbool.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int privs_drop_root(char *msg, size_t msglen)
{
    msg[0] = '\0';
    if (geteuid() != 0 && getuid() != 0)
        return PRIVS_UNCHANGED;
    const char *want = getenv("ONEBLOG_USER");
    bool asked = want && *want;
    if (!asked)
        want = "oneblog";
    if (strcmp(want, "root") == 0) {
        snprintf(msg, msglen, "running as root (ONEBLOG_USER=root)");
        return PRIVS_STAYED_ROOT;
    }
    errno = 0;
    struct passwd *pw = getpwnam(want);
    if (pw == NULL) {
        if (asked) {
            snprintf(msg, msglen, "ONEBLOG_USER=%s: no such user", want);
            return -ENOENT;
        }
        snprintf(msg, msglen, "running as root: no user 'oneblog' to switch to "
                 "(create it, or set ONEBLOG_USER)");
        return PRIVS_STAYED_ROOT;
    }
    if (pw->pw_uid == 0) {
        snprintf(msg, msglen, "ONEBLOG_USER=%s is root", want);
        return -EINVAL;
    }
    /* Order matters: groups and gid while we still may change them, uid last. */
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        int e = errno;
        snprintf(msg, msglen, "cannot switch to user %s: %s", want, strerror(e));
        return -e;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        snprintf(msg, msglen, "switched to user %s but root could be regained", want);
        return -EPERM;
    }
    if (pw->pw_dir && *pw->pw_dir)
        setenv("HOME", pw->pw_dir, 1);
    snprintf(msg, msglen, "started as root: now running as %s (uid %u, gid %u)", want,
             (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
    return PRIVS_DROPPED;
}
