/* ticker.h — a thread that calls a function every interval until stopped: the background
 * recomputations of kiln serve (drift windows, alert rules) without each owning the timed-wait
 * boilerplate. */
#ifndef KL_TICKER_H
#define KL_TICKER_H

#include "runtime/status.h"

typedef struct kl_ticker kl_ticker;

/* Starts a thread calling fn(ctx) every interval_s seconds (> 0; the first call one interval
 * after the start; a slow call delays the next, calls never overlap) until kl_ticker_stop. */
kl_status kl_ticker_start(double interval_s, void (*fn)(void *ctx), void *ctx, kl_ticker **out);

/* Stops the thread, waiting for a call in progress to finish, and frees. Safe on NULL. */
void kl_ticker_stop(kl_ticker *t);

#endif
