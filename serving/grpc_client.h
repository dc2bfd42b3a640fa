/* grpc_client.h — the gRPC client transport: channels, unary calls, and a pool of asynchronous
 * calls for load generation.
 *
 * The only client-side module that calls gRPC (core C API, libgrpc 1.51); serving/grpc_server.c
 * is the server side. Everything here moves opaque bytes: the Open Inference Protocol messages
 * are packed and unpacked by serving/oip_client_codec.
 *
 * - A channel is one target ("host:port", or any gRPC target such as "unix:/path"), insecure or
 *   TLS with a CA file. It owns a grpc_init reference, released when it is freed.
 * - kl_grpc_call_unary: one call, blocking, with a deadline; the answer is the status code, its
 *   message and the response bytes.
 * - kl_grpc_pool: a fixed set of call slots over one or more completion-queue threads. A slot
 *   holds one call at a time; each completion is reported through a callback on a CQ thread,
 *   which may start the slot's next call at once. That keeps exactly N calls outstanding
 *   (closed loop) without a thread per call and without allocating anything of ours per call.
 */
#ifndef KL_GRPC_CLIENT_H
#define KL_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "serving/oip_codec.h" /* kl_grpc_code and kl_grpc_code_name */

typedef struct kl_grpc_channel kl_grpc_channel;

typedef struct {
    const char *ca_file;    /* PEM file of trusted root certificates: TLS when set, else insecure */
    int max_message_bytes;  /* largest response accepted, bytes; <= 0 means no limit */
    int private_connection; /* 1: a TCP connection of its own, not shared with other channels */
} kl_grpc_channel_opts;

/* Defaults: insecure, no response size limit, shared connection. */
kl_grpc_channel_opts kl_grpc_channel_defaults(void);

/* Creates a channel to target (e.g. "127.0.0.1:8001"); nothing connects until the first call.
 * opts may be NULL (defaults). Fails on an empty target or an unreadable CA file. On KL_OK *out
 * is owned by the caller (kl_grpc_channel_free). */
kl_status kl_grpc_channel_create(const char *target, const kl_grpc_channel_opts *opts,
                                 kl_grpc_channel **out);

/* Destroys the channel and releases its grpc_init reference. Every call and pool on it must be
 * finished and freed first. Safe on NULL. */
void kl_grpc_channel_free(kl_grpc_channel *ch);

/* The target the channel was created for (owned by the channel). */
const char *kl_grpc_channel_target(const kl_grpc_channel *ch);

/* The outcome of one unary call. */
typedef struct {
    kl_grpc_code code; /* the call's status (UNAVAILABLE when the server cannot be reached) */
    char *message;     /* the status message, malloc'd, never NULL after a call ("" if none) */
    uint8_t *data;     /* the response message, malloc'd; NULL when none came */
    size_t len;        /* bytes in data */
} kl_grpc_reply;

/* Calls method ("/package.Service/Method") with the request bytes req[0..len) and waits for
 * the answer, at most timeout_ms milliseconds (<= 0: no deadline). Returns KL_OK whenever the
 * call ran to a status, whatever that status is (out->code says); a local failure (out of
 * memory, a call gRPC refused to start) is a kl_status with kl_errmsg() set. On KL_OK *out owns
 * its message and data (kl_grpc_reply_free). Thread-safe: calls may share a channel. */
kl_status kl_grpc_call_unary(kl_grpc_channel *ch, const char *method, const uint8_t *req,
                             size_t len, int64_t timeout_ms, kl_grpc_reply *out);

/* Frees what a reply owns and zeroes it; safe on a zeroed reply. */
void kl_grpc_reply_free(kl_grpc_reply *r);

/* --- asynchronous calls ------------------------------------------------------------------- */

/* Request bytes held once and sent by any number of calls, concurrently, without a copy. */
typedef struct kl_grpc_payload kl_grpc_payload;

/* Copies bytes[0..len) once into a payload owned by the caller (kl_grpc_payload_free). */
kl_status kl_grpc_payload_create(const uint8_t *bytes, size_t len, kl_grpc_payload **out);

/* Drops the caller's reference; calls still sending it keep the bytes alive. Safe on NULL. */
void kl_grpc_payload_free(kl_grpc_payload *p);

/* How one pooled call ended. */
typedef struct {
    kl_grpc_code code; /* its status */
    const char
        *message;     /* the status message (truncated to 255 bytes), valid during the callback */
    size_t resp_len;  /* bytes of the response message (it is not copied out) */
    int64_t start_ns; /* when it started, CLOCK_MONOTONIC nanoseconds */
    int64_t end_ns;   /* when its completion was taken off the queue, same clock */
} kl_grpc_completion;

/* Called on a completion-queue thread when the call on `slot` ends. The slot is free again when
 * it runs: it may call kl_grpc_pool_start on that slot (or any free one). It must not block. */
typedef void (*kl_grpc_done_fn)(void *user, int slot, const kl_grpc_completion *c);

typedef struct {
    int slots;               /* calls that can be in flight at once, >= 1 */
    int threads;             /* completion-queue threads (one CQ each), >= 1 */
    kl_grpc_done_fn on_done; /* completion callback */
    void *user;              /* passed to on_done */
} kl_grpc_pool_opts;

typedef struct kl_grpc_pool kl_grpc_pool;

/* Creates a pool calling `method` on the given channels (borrowed: they must outlive the pool;
 * slot i uses channels[i % n_channels] and CQ thread i % threads) and starts its threads. All
 * per-call state is allocated here, once. On KL_OK *out is owned by the caller. */
kl_status kl_grpc_pool_create(kl_grpc_channel *const *channels, int n_channels, const char *method,
                              const kl_grpc_pool_opts *opts, kl_grpc_pool **out);

/* Starts a call on a free slot, sending req (borrowed: it only needs to live until this
 * returns), with a deadline timeout_ms from now (<= 0: none). Its end is reported through
 * on_done. Fails (kl_errmsg set) on a busy or out-of-range slot, or if gRPC refuses the call. */
kl_status kl_grpc_pool_start(kl_grpc_pool *p, int slot, const kl_grpc_payload *req,
                             int64_t timeout_ms);

/* Cancels every call in flight; each still completes (CANCELLED) through on_done, which should
 * then not start another. */
void kl_grpc_pool_cancel_all(kl_grpc_pool *p);

/* Waits until no call is in flight (all completed and their callbacks returned). */
void kl_grpc_pool_wait_idle(kl_grpc_pool *p);

/* Cancels what is in flight, waits for it, stops and joins the threads and frees the pool.
 * Must not be called from on_done. Safe on NULL. */
void kl_grpc_pool_free(kl_grpc_pool *p);

/* CLOCK_MONOTONIC now, in nanoseconds (the clock of kl_grpc_completion). */
int64_t kl_grpc_now_ns(void);

#endif
