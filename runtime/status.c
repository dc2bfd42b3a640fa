/* status.c — thread-local error messages with context prefixes. */
#include "runtime/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define KL_ERRMSG_CAP 2048

static _Thread_local char errmsg[KL_ERRMSG_CAP];

const char *kl_errmsg(void) {
    return errmsg;
}

kl_status kl_seterr(kl_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return s;
}

kl_status kl_preferr(kl_status s, const char *fmt, ...) {
    char old[KL_ERRMSG_CAP];
    memcpy(old, errmsg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    size_t used = (size_t)n < sizeof errmsg ? (size_t)n : sizeof errmsg - 1;
    if (old[0] && used + 2 < sizeof errmsg) {
        memcpy(errmsg + used, ": ", 2);
        used += 2;
        size_t room = sizeof errmsg - 1 - used;
        size_t len = strlen(old);
        if (len > room) len = room;
        memcpy(errmsg + used, old, len);
        errmsg[used + len] = '\0';
    }
    return s;
}

void kl_clearerr(void) {
    errmsg[0] = '\0';
}

const char *kl_status_name(kl_status s) {
    switch (s) {
    case KL_OK:
        return "ok";
    case KL_EINVAL:
        return "invalid argument";
    case KL_EIO:
        return "I/O error";
    case KL_ENOMEM:
        return "out of memory";
    case KL_EFORMAT:
        return "malformed input";
    case KL_ENOTFOUND:
        return "not found";
    case KL_EUNSUPPORTED:
        return "unsupported";
    case KL_EINTERNAL:
        return "internal error";
    case KL_ECANCELED:
        return "canceled";
    }
    return "unknown error";
}
