/* strbuf.c — the growable text buffer of strbuf.h. */
#include "runtime/strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kl_strbuf_addn(kl_strbuf *b, const char *s, size_t n) {
    if (b->oom || n > SIZE_MAX / 4 - b->len) {
        b->oom = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

char *kl_strbuf_reserve(kl_strbuf *b, size_t n) {
    size_t len = b->len;
    kl_strbuf_addn(b, "", 0); /* allocates the first block */
    if (b->oom || n > SIZE_MAX / 4 - len) {
        b->oom = 1;
        return NULL;
    }
    if (len + n + 1 > b->cap) {
        size_t cap = b->cap;
        while (cap < len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + len;
}

void kl_strbuf_commit(kl_strbuf *b, size_t n) {
    if (b->oom || b->len + n + 1 > b->cap) return;
    b->len += n;
    b->p[b->len] = '\0';
}

void kl_strbuf_add(kl_strbuf *b, const char *s) {
    kl_strbuf_addn(b, s, strlen(s));
}

void kl_strbuf_addf(kl_strbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        kl_strbuf_addn(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    kl_strbuf_addn(b, big, (size_t)n);
    free(big);
}

/* Writes the decimal digits of u (u > 0) ending at end; returns where they start. */
static char *digits_before(char *end, uint64_t u) {
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

/* 10^k for k in [-31, 55], the scales a float's 9 digits need (literals round correctly). */
static const double pow10_table[] = {
    1e-31, 1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21, 1e-20, 1e-19,
    1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9,  1e-8,  1e-7,  1e-6,
    1e-5,  1e-4,  1e-3,  1e-2,  1e-1,  1e0,   1e1,   1e2,   1e3,   1e4,   1e5,   1e6,   1e7,
    1e8,   1e9,   1e10,  1e11,  1e12,  1e13,  1e14,  1e15,  1e16,  1e17,  1e18,  1e19,  1e20,
    1e21,  1e22,  1e23,  1e24,  1e25,  1e26,  1e27,  1e28,  1e29,  1e30,  1e31,  1e32,  1e33,
    1e34,  1e35,  1e36,  1e37,  1e38,  1e39,  1e40,  1e41,  1e42,  1e43,  1e44,  1e45,  1e46,
    1e47,  1e48,  1e49,  1e50,  1e51,  1e52,  1e53,  1e54,  1e55};

static double pow10_of(int k) {
    return pow10_table[k + 31];
}

int kl_format_float9(char out[24], float v) {
    char *o = out;
    if (v == 0) { /* both zeros: "0", "-0" */
        if (signbit(v)) *o++ = '-';
        *o++ = '0';
        *o = 0;
        return (int)(o - out);
    }
    if (v < 0) *o++ = '-';
    double d = fabs((double)v);
    char tmp[24];
    uint32_t u = d < 16777216.0 ? (uint32_t)d : 0;
    if (u && (double)u == d) { /* a whole number, exactly held by a float: digits in place */
        int n = u < 10         ? 1
                : u < 100      ? 2
                : u < 1000     ? 3
                : u < 10000    ? 4
                : u < 100000   ? 5
                : u < 1000000  ? 6
                : u < 10000000 ? 7
                               : 8;
        for (int i = n - 1; i >= 0; i--, u /= 10)
            o[i] = (char)('0' + u % 10);
        o[n] = 0;
        return (int)(o - out) + n;
    }
    /* 9 significant digits m (10^8 <= m < 10^9) with d ~ m * 10^(e - 8); rint rounds a tie
     * to even, as printf does with the exact value. */
    int e2;
    frexp(d, &e2); /* d in [2^(e2-1), 2^e2): its decimal exponent, within one, without log10 */
    int e = (int)floor((e2 - 1) * 0.30102999566398120);
    if (d >= pow10_of(e + 1)) e++;
    uint64_t m = (uint64_t)rint(d * pow10_of(8 - e));
    if (m >= 1000000000ULL) {
        e++;
        m = (uint64_t)rint(d * pow10_of(8 - e));
    } else if (m < 100000000ULL) {
        e--;
        m = (uint64_t)rint(d * pow10_of(8 - e));
    }
    char dig[9];
    digits_before(dig + 9, m);
    int k = 9; /* significant digits kept: %g drops trailing zeros */
    while (k > 1 && dig[k - 1] == '0')
        k--;
    if (e < -4 || e >= 9) { /* d.ddde+XX, as %g */
        *o++ = dig[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, (size_t)(k - 1));
            o += k - 1;
        }
        *o++ = 'e';
        *o++ = e < 0 ? '-' : '+';
        int ae = e < 0 ? -e : e;
        if (ae < 10) *o++ = '0';
        char *s = digits_before(tmp + sizeof tmp, (uint64_t)ae);
        size_t n = (size_t)(tmp + sizeof tmp - s);
        memcpy(o, s, n);
        o += n;
    } else if (e >= 0) { /* ddd.ddd */
        for (int i = 0; i <= e; i++)
            *o++ = i < k ? dig[i] : '0';
        if (k > e + 1) {
            *o++ = '.';
            memcpy(o, dig + e + 1, (size_t)(k - e - 1));
            o += k - e - 1;
        }
    } else { /* 0.000ddd */
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -e - 1; i++)
            *o++ = '0';
        memcpy(o, dig, (size_t)k);
        o += k;
    }
    *o = 0;
    return (int)(o - out);
}

void kl_strbuf_add_float(kl_strbuf *b, float v) {
    char tmp[24];
    kl_strbuf_addn(b, tmp, (size_t)kl_format_float9(tmp, v));
}
