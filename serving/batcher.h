/* batcher.h — the dynamic batcher of one model version: queue, batch, run, split.
 *
 * Requests (decoded kl_oip_requests) wait in priority queues; each model instance (a thread with
 * its own kl_mlp arena and preallocated input/output buffers) takes as many queued requests as
 * fit in max_batch rows, runs them as one forward pass and hands each request its slice of the
 * outputs. A batch goes as soon as an instance is free and either it is full, its size is one of
 * the preferred sizes, or the oldest request has waited max_queue_delay_us; with the default
 * delay of 0 an instance takes whatever queued while the previous batch ran. Requests past their
 * timeout are answered DEADLINE_EXCEEDED without running; a full queue answers
 * RESOURCE_EXHAUSTED at once.
 *
 * Per-version statistics (Triton's ModelStatistics figures) are kept here, under the queue lock
 * for the batch-level ones and with atomics otherwise.
 */
#ifndef KL_BATCHER_H
#define KL_BATCHER_H

#include <stdint.h>

#include "runtime/bundle.h"        /* the model that runs */
#include "runtime/device.h"        /* where it runs */
#include "serving/model_manager.h" /* kl_batch_opts, kl_infer_done_fn, kl_model_stats */

typedef struct kl_batcher kl_batcher;

/* Observes each finished batch (for metrics): its rows and its stage durations in ns. Called on
 * the instance thread after the batch's callbacks; may be NULL. */
typedef void (*kl_batch_observer)(void *ctx, int64_t rows, uint64_t input_ns, uint64_t infer_ns,
                                  uint64_t output_ns);

/* Creates a batcher for bundle b (borrowed: it must outlive the batcher) on device dev, with
 * opts->instances threads started at once. `model` and `version` label results and messages
 * (copied). */
kl_status kl_batcher_create(const kl_bundle *b, kl_device dev, const kl_batch_opts *opts,
                            const char *model, const char *version, kl_batcher **out);

/* Queues req (its contents are moved in; *req is left zeroed). done(user, req, result) is called
 * exactly once: at once on this thread for a full queue or a stopped batcher, else on an
 * instance thread. Returns nothing: every outcome goes through done. */
void kl_batcher_submit(kl_batcher *bt, kl_oip_request *req, kl_infer_done_fn done, void *user);

/* Sets the observer of finished batches (before any submit). */
void kl_batcher_observe(kl_batcher *bt, kl_batch_observer fn, void *ctx);

/* Requests queued now (not counting running batches). */
uint32_t kl_batcher_queued(kl_batcher *bt);

/* Copies the statistics into *out (name left empty; batch_sizes malloc'd, owned by out). */
kl_status kl_batcher_stats(kl_batcher *bt, kl_model_stats *out);

/* Finishes every queued request (they run), stops and joins the instances and frees. Must not be
 * called from one of its own instance threads. Safe on NULL. */
void kl_batcher_free(kl_batcher *bt);

#endif
