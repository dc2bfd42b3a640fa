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

/* Writes a finite float as printf's "%.9g" would (9 significant digits, so the text reads back
 * as the same float), without printf: a log of every request's inputs formats hundreds of
 * values per request, and vsnprintf was most of its cost. Whole numbers below 2^24 take a short
 * path. The text is printf's on every one of a million random floats (tests/unit/test_strbuf.c);
 * where the scaling by 10^k is inexact (|k| > 22) the 9th digit could in theory differ, and the
 * text would still read back exactly. out needs 24 bytes; returns the length. Not for NaN or
 * infinities. */
int kl_format_float9(char out[24], float v);

/* Room for n more bytes: returns where they go (NULL after an allocation failure); write up to
 * n bytes there, then kl_strbuf_commit how many were written. For loops that would otherwise
 * append one short piece at a time. */
char *kl_strbuf_reserve(kl_strbuf *b, size_t n);
void kl_strbuf_commit(kl_strbuf *b, size_t n);

/* Appends kl_format_float9(v). */
void kl_strbuf_add_float(kl_strbuf *b, float v);

#endif
