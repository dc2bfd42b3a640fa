/* drift_log.h — reading a prediction log (JSONL) back for an offline drift report.
 *
 * One JSON object per line, written by the server's prediction log (monitor/prediction_log.h):
 *   {"type":"prediction","time":"...","request_id":"r1","model":"fmnist","version":"1",
 *    "inputs":[[f,...],...],"outputs":[[p,...],...]}
 *      inputs: rows x features as the client sent them (raw); outputs: rows x outputs
 *      (probabilities for classification, predictions for regression); null stands for a value
 *      JSON cannot hold (NaN), which drift then skips
 *   {"type":"feedback","time":"...","request_id":"r1","model":"fmnist","labels":[3,7]}
 *      counted and otherwise ignored here
 * A line that is not such an object (bad JSON, an unknown type, rows of the wrong width, inputs
 * and outputs of different lengths) is skipped whole and counted; blank lines are ignored.
 * The path may be the log's directory (kiln serve --prediction-log DIR): its rotated files
 * predictions-NNNNNN.jsonl are read oldest first. */
#ifndef KL_DRIFT_LOG_H
#define KL_DRIFT_LOG_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/status.h"

typedef struct {
    int64_t lines;       /* lines read, blank ones included */
    int64_t records;     /* prediction records used */
    int64_t feedback;    /* feedback records (not used for drift) */
    int64_t other_model; /* prediction records of another model (with a name filter) */
    int64_t skipped;     /* malformed lines skipped */
    int64_t rows;        /* rows collected from the records used */
    int d;               /* features per row */
    int n_out;           /* outputs per row */
    float *x;            /* [rows, d], owned */
    float *out;          /* [rows, n_out], owned */
} kl_drift_log;

/* Reads every prediction record of the log at path whose rows have d features and n_out
 * outputs (and, when model is not NULL, whose "model" is model). Each malformed line is counted
 * and, for the first max_warn of them, reported to warn (NULL: silent) as "PATH:LINE: what".
 * An unreadable file is an error; malformed lines are not. Free with kl_drift_log_free. */
kl_status kl_drift_log_read(const char *path, int d, int n_out, const char *model, FILE *warn,
                            int max_warn, kl_drift_log *out);

void kl_drift_log_free(kl_drift_log *log);

#endif
