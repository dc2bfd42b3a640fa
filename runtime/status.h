/* status.h — kiln's error convention.
 *
 * Every public function returns a kl_status: KL_OK (0) or a negative kind. The human message
 * lives in a thread-local buffer read with kl_errmsg(); each level of the call stack may prefix
 * its own context ("load bundle: model.safetensors: tensor \"fc1.weight\": ...").
 * Only cli/ decides to exit.
 */
#ifndef KL_STATUS_H
#define KL_STATUS_H

typedef enum {
    KL_OK = 0,
    KL_EINVAL = -1,       /* bad argument or bad value in a config / request */
    KL_EIO = -2,          /* the operating system refused a read, write or open */
    KL_ENOMEM = -3,       /* an allocation failed */
    KL_EFORMAT = -4,      /* a file or message is malformed */
    KL_ENOTFOUND = -5,    /* a named thing does not exist */
    KL_EUNSUPPORTED = -6, /* valid but not supported by this build or device */
    KL_EINTERNAL = -7,    /* a broken invariant: a bug in kiln */
    KL_ECANCELED = -8,    /* stopped on request (Ctrl-C) */
} kl_status;

/* The message of the last error set on this thread ("" if none). */
const char *kl_errmsg(void);

/* Sets this thread's message (printf-style) and returns s, so callers write
 * `return kl_seterr(KL_EINVAL, "batch_size %d must be > 0", n);`. */
kl_status kl_seterr(kl_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes this thread's message with "<context>: " and returns s. */
kl_status kl_preferr(kl_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears this thread's message. */
void kl_clearerr(void);

/* A short name of a status kind ("invalid argument", "I/O error", ...). */
const char *kl_status_name(kl_status s);

/* Propagates a non-OK status from an expression. */
#define KL_TRY(expr)                                                                               \
    do {                                                                                           \
        kl_status kl_try_s_ = (expr);                                                              \
        if (kl_try_s_ != KL_OK) return kl_try_s_;                                                  \
    } while (0)

#endif
