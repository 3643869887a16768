/* srv_web.h - the page attnd serves to browsers at GET / (server/web/: HTML,
 * JS, CSS), compiled into the binary by server/web/embed.cmake. Immutable
 * data: any thread may read it. */
#ifndef ATTND_SRV_WEB_H
#define ATTND_SRV_WEB_H

#include <stddef.h>

typedef struct srv_web_asset {
    const char *path; /* "/", "/app.js", ... */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len;
} srv_web_asset;

/* The table, ending with a NULL path (generated). */
extern const srv_web_asset srv_web_assets[];

/* The asset served at PATH; NULL: none. */
const srv_web_asset *srv_web_find(const char *path);

#endif
