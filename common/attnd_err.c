/* attnd_err.c - formatting of error messages (see attnd_err.h). */
#include "attnd_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int attnd_err_set(attnd_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void attnd_err_prefix(attnd_err *e, const char *fmt, ...)
{
    if (!e)
        return;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%.200s: %.300s", prefix, old);
}

void attnd_err_clear(attnd_err *e)
{
    if (e) {
        e->code = ATTND_OK;
        e->msg[0] = '\0';
    }
}

const char *attnd_strerror(int code)
{
    switch (code) {
    case ATTND_OK: return "ok";
    case ATTND_EINVAL: return "invalid input";
    case ATTND_EIO: return "i/o error";
    case ATTND_ENOMEM: return "out of memory";
    case ATTND_EFORMAT: return "malformed file";
    case ATTND_EUNSUPPORTED: return "unsupported";
    case ATTND_ENOTFOUND: return "not found";
    case ATTND_ERANGE: return "out of range";
    default: return "unknown error";
    }
}
