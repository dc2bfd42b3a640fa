/* stubs_pending.c — TEMPORARY: subcommands not yet written. Each is removed from here when its
 * real file lands in cli/. */
#include <stdio.h>

#include "cli/cli.h"
