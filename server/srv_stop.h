/* srv_stop.h - the stop-string matcher of a generation. One per request;
 * used by the scheduler thread only. */
#ifndef ATTND_SRV_STOP_H
#define ATTND_SRV_STOP_H

#include <stdbool.h>
#include <stddef.h>

#include "srv_api.h"

/* Stop strings, matched across token boundaries and never emitted: text is
 * fed as it is produced; what is returned for emission holds back any tail
 * that could still be the start of a stop string. Output boundaries never
 * split a UTF-8 character if the input does not. */
typedef struct srv_stop srv_stop;

srv_stop *srv_stop_new(char *const *stop, const size_t *stop_len, size_t n);
void srv_stop_free(srv_stop *s);
/* Feeds TEXT; *EMIT (valid until the next call) is what may be sent now;
 * *STOPPED is set when a stop string was found (nothing after it is ever
 * emitted; further feeds are ignored). */
int srv_stop_feed(srv_stop *s, const char *text, size_t len, const char **emit,
                  size_t *emit_len, bool *stopped);
/* At the end of generation: whatever was held back. */
void srv_stop_flush(srv_stop *s, const char **emit, size_t *emit_len);

#endif
