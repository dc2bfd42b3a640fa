/* strbuf.h — a growable NUL-terminated text buffer for building SQL, JSON lines and the like.
 * An allocation failure sets oom and stops the growth; the caller checks oom once at the end. */
#ifndef KL_STRBUF_H
#define KL_STRBUF_H

#include <stddef.h>

typedef struct {
    char *p;    /* NUL-terminated text, owned (free it); NULL while empty */
    size_t len; /* bytes in p before the NUL */
    size_t cap; /* bytes allocated */
    int oom;    /* an allocation failed */
} kl_strbuf;

void kl_strbuf_addn(kl_strbuf *b, const char *s, size_t n);
void kl_strbuf_add(kl_strbuf *b, const char *s);
void kl_strbuf_addf(kl_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
