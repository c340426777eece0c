/* error.c - text for libcnode's return codes, which are negative errno values. */
#include "cnode_int.h"

#include <errno.h>
#include <string.h>

const char *cn_strerror(int rc)
{
    if (rc >= 0)
        return "success";
    switch (-rc) {
    case ESRCH: return "no such process";
    case ETIMEDOUT: return "timed out";
    case ENOBUFS: return "mailbox full";
    case EHOSTUNREACH: return "node not connected";
    default: return strerror(-rc);
    }
}
