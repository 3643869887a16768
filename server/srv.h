/* srv.h - `attnd serve`: loads the model and runs the server until it has
 * drained after SIGTERM/SIGINT. The calling thread becomes the scheduler's
 * libuv loop thread; libmicrohttpd runs its own threads. */
#ifndef ATTND_SRV_H
#define ATTND_SRV_H

#include "attnd_err.h"
#include "cfg.h"

int srv_run(const cfg *c, attnd_err *err);

#endif
