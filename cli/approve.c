/* approve.c — `kiln approve NAME VERSION --by WHO [--note TEXT]` (a person's sign-off moves
 * champion to the version, the old champion to previous) and `kiln rollback NAME` (champion back
 * to previous), against the MLflow registry at MLFLOW_TRACKING_URI. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/promotion.h"

int kl_cmd_approve(int argc, char **argv) {
    const char *name = NULL, *version = NULL, *by = NULL, *note = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kiln approve NAME VERSION --by WHO [--note TEXT]\n\n"
                   "Records the sign-off in the version's tags (kiln.approval=approved,\n"
                   "kiln.approved_by, kiln.approved_at, kiln.approval_note) and promotes it:\n"
                   "alias champion -> VERSION, previous -> the old champion.\n");
            return 0;
        } else if (!strcmp(argv[i], "--by") && i + 1 < argc) {
            by = argv[++i];
        } else if (!strcmp(argv[i], "--note") && i + 1 < argc) {
            note = argv[++i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else if (argv[i][0] != '-' && !version) {
            version = argv[i];
        } else {
            fprintf(stderr, "kiln approve: unknown or incomplete option \"%s\"\n", argv[i]);
            return 2;
        }
    }
    if (!name || !version || !by || !*by) {
        fprintf(stderr, "usage: kiln approve NAME VERSION --by WHO [--note TEXT]\n");
        return 2;
    }
    kl_mlflow *c = NULL;
    if (kl_mlflow_open(NULL, &c) || kl_approve(c, name, version, by, note)) {
        kl_mlflow_close(c);
        return kl_cli_fail("approve");
    }
    kl_mlflow_close(c);
    printf("%s version %s approved by %s: alias champion -> %s\n", name, version, by, version);
    return 0;
}

int kl_cmd_rollback(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: kiln rollback NAME\n\nMoves alias champion back to the version alias "
               "previous points at and tags the\ndemoted version kiln.rolled_back_at. A server "
               "polling models:/NAME@champion\nswaps back on its next poll.\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: kiln rollback NAME\n");
        return 2;
    }
    kl_mlflow *c = NULL;
    char from[32] = "", to[32] = "";
    if (kl_mlflow_open(NULL, &c) || kl_rollback(c, argv[1], from, to)) {
        kl_mlflow_close(c);
        return kl_cli_fail("rollback");
    }
    kl_mlflow_close(c);
    printf("%s: alias champion %s -> %s (previous)\n", argv[1], from[0] ? from : "(none)", to);
    return 0;
}
