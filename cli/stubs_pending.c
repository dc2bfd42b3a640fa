/* stubs_pending.c — TEMPORARY: subcommands not yet written. Each is removed from here when its
 * real file lands in cli/. */
#include <stdio.h>

#include "cli/cli.h"

int kl_cmd_data(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln data: not built yet\n");
    return 1;
}

