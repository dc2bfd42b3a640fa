/* cli.h — the subcommands of the kiln binary. Each takes argc/argv after its own name and
 * returns the process exit code: 0 success, 1 failure (message already printed), 2 usage error. */
#ifndef KL_CLI_H
#define KL_CLI_H

#include <stdint.h>

#include "runtime/status.h"
#include "serving/grpc_client.h" /* kl_grpc_channel, for the infer/loadgen helpers below */

int kl_cmd_train(int argc, char **argv);
int kl_cmd_predict(int argc, char **argv);
int kl_cmd_export_onnx(int argc, char **argv);
int kl_cmd_data(int argc, char **argv);
int kl_cmd_tracking(int argc, char **argv);
int kl_cmd_register(int argc, char **argv);
int kl_cmd_alias(int argc, char **argv);
int kl_cmd_serve(int argc, char **argv);
int kl_cmd_eval(int argc, char **argv);
int kl_cmd_approve(int argc, char **argv);
int kl_cmd_rollback(int argc, char **argv);
int kl_cmd_gates(int argc, char **argv);
int kl_cmd_pipeline(int argc, char **argv);
int kl_cmd_infer(int argc, char **argv);
int kl_cmd_loadgen(int argc, char **argv);
int kl_cmd_monitor(int argc, char **argv);
int kl_cmd_feedback(int argc, char **argv);

/* Prints "kiln <what>: <message>" to stderr from the thread's kl_errmsg and returns 1. */
int kl_cli_fail(const char *what);

/* --- shared by `kiln infer` and `kiln loadgen` (cli/infer.c) ------------------------------ */

/* Reads rows for a served model: IDX images (values as stored, unscaled) or a CSV of numeric
 * feature columns, with or without a header row; a header column named skip_column (may be NULL)
 * is left out. On KL_OK *x ([*n, *d], malloc'd) belongs to the caller. */
kl_status kl_cli_read_rows(const char *path, const char *skip_column, float **x, int64_t *n,
                           int64_t *d);

/* The one input of a served model, as the client sends it. */
typedef struct {
    char name[256];        /* input tensor name */
    char datatype[16];     /* protocol datatype ("FP32") */
    int batched;           /* 1: the shape starts with the batch dimension (-1 in metadata) */
    int n_item_dims;       /* dimensions of one row (the batch dimension excluded) */
    int64_t item_shape[8]; /* those dimensions, all >= 1 */
    int64_t row_values;    /* values per row: the product of item_shape */
} kl_cli_input;

/* Learns the input of model@version: from the user's name/datatype/shape when name is given
 * (shape "D1,D2,..." per row; NULL: one dimension of row_values), else from ModelMetadata (one
 * input; a -1 inside the row shape is solved from row_values). row_values is the values per row
 * of the rows to send, 0 when unknown (random rows). A server error reads
 * ModelMetadata "m": NOT_FOUND: <its message>. */
kl_status kl_cli_resolve_input(kl_grpc_channel *ch, const char *model, const char *version,
                               const char *name, const char *datatype, const char *shape,
                               int64_t row_values, int64_t timeout_ms, kl_cli_input *out);

/* A unary call whose non-OK status becomes an error "<what>: <CODE>: <message>"; on KL_OK
 * *reply holds the response (kl_grpc_reply_free). *code (may be NULL) gets the status. */
kl_status kl_cli_call(kl_grpc_channel *ch, const char *method, const char *what, const uint8_t *req,
                      size_t len, int64_t timeout_ms, kl_grpc_reply *reply, kl_grpc_code *code);

#endif
