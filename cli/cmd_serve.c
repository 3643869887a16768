/* cmd_serve.c - `attnd serve`: configuration (defaults < file < ATTND_*
 * environment < flags), then the server until it has drained. */
#include <stdio.h>

#include "cfg.h"
#include "cli.h"
#include "srv.h"

extern char **environ;

int cli_serve(int argc, char **argv)
{
    cfg c;
    bool help = false;
    attnd_err err = {0};
    if (cfg_load(&c, argc, argv, environ, &help, &err) != ATTND_OK) {
        if (help) {
            fprintf(stdout, "usage: attnd serve -m MODEL.gguf [--host H] [--port P] [OPTIONS]\n\n");
            cfg_print_help(stdout);
            return 0;
        }
        fprintf(stderr, "attnd serve: %s\n", err.msg);
        return 2;
    }
    if (help) {
        fprintf(stdout, "usage: attnd serve -m MODEL.gguf [--host H] [--port P] [OPTIONS]\n\n"
                        "Serves the model over HTTP until SIGTERM/SIGINT, then drains.\n\n");
        cfg_print_help(stdout);
        return 0;
    }
    if (srv_run(&c, &err) != ATTND_OK) {
        fprintf(stderr, "attnd serve: %s\n", err.msg);
        return 1;
    }
    return 0;
}
