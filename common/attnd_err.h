/* attnd_err.h - the error convention every module follows.
 *
 * Functions that can fail return an int status (ATTND_OK or a negative ATTND_E*
 * code) and, when given a non-NULL attnd_err, fill it with a message a caller can
 * show to a user as is. The message names the thing that was wrong (file, field,
 * tensor, key), so callers rarely need to add context. */
#ifndef ATTND_ERR_H
#define ATTND_ERR_H

#include <stddef.h>

enum {
    ATTND_OK = 0,
    ATTND_EINVAL = -1,      /* bad argument or bad input from outside */
    ATTND_EIO = -2,         /* open/read/write/mmap failed */
    ATTND_ENOMEM = -3,      /* allocation failed */
    ATTND_EFORMAT = -4,     /* malformed file */
    ATTND_EUNSUPPORTED = -5,/* well-formed but not something we handle */
    ATTND_ENOTFOUND = -6,   /* a named key, tensor or token does not exist */
    ATTND_ERANGE = -7,      /* a value is outside what is allowed */
};

typedef struct attnd_err {
    int code;
    char msg[512];
} attnd_err;

/* Fills *e (if non-NULL) and returns code, so callers can write
 * `return attnd_err_set(e, ATTND_EFORMAT, "...", ...);`. */
int attnd_err_set(attnd_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (e.g. the file name). */
void attnd_err_prefix(attnd_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void attnd_err_clear(attnd_err *e);

/* Short name of a status code, e.g. "malformed file". */
const char *attnd_strerror(int code);

#endif
