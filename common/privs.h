/* privs.h - a service started as root gives root up before it does anything.
 *
 * Every OneBlog service calls privs_drop_root() first thing in main(). Started
 * by an unprivileged user (containers, systemd's User=), it does nothing. Started
 * as root, it switches to ONEBLOG_USER (default "oneblog"): supplementary groups,
 * then the group, then the user, checks that root cannot be regained, and sets
 * HOME to the user's home (the default cookie file is ~/.erlang.cookie). None of
 * the services needs a privileged port. When ONEBLOG_USER is not set and no user
 * "oneblog" exists (a developer machine, CI), the service keeps running as root
 * and says so; ONEBLOG_USER=root keeps root on purpose.
 */
#ifndef ONEBLOG_PRIVS_H
#define ONEBLOG_PRIVS_H

#include <stddef.h>

enum { PRIVS_UNCHANGED = 0, PRIVS_DROPPED = 1, PRIVS_STAYED_ROOT = 2 };

/* Returns PRIVS_UNCHANGED (not root), PRIVS_DROPPED (msg says to whom),
 * PRIVS_STAYED_ROOT (msg says why), or a negative errno with msg saying what
 * failed: the caller must then exit. msg receives one line (msglen bytes). */
int privs_drop_root(char *msg, size_t msglen);

#endif /* ONEBLOG_PRIVS_H */
