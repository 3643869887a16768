/* srv_web.c - looking up the page's files (srv_web.h). */
#include "srv_web.h"

#include <string.h>

const srv_web_asset *srv_web_find(const char *path)
{
    for (const srv_web_asset *a = srv_web_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}
