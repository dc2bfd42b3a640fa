/* digest.c — SHA-256 over the canonical bytes described in digest.h. */
#include "data/digest.h"

#include "runtime/sha256.h"

#include <stdio.h>
#include <string.h>

/* Bytes are staged here so the hash sees large updates whatever the host byte order. */
#define STAGE 16384

/* A hash in progress with its staging buffer. */
typedef struct {
    kl_sha256 sha;            /* the running hash */
    unsigned char buf[STAGE]; /* pending bytes */
    size_t n;                 /* bytes pending in buf */
} hasher;

static void flush(hasher *h) {
    kl_sha256_update(&h->sha, h->buf, h->n);
    h->n = 0;
}

static void put(hasher *h, const void *p, size_t n) {
    if (n > STAGE / 2) {
        flush(h);
        kl_sha256_update(&h->sha, p, n);
        return;
    }
    if (h->n + n > STAGE) flush(h);
    memcpy(h->buf + h->n, p, n);
    h->n += n;
}

static void put_u32(hasher *h, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(h, b, 4);
}

static void put_u64(hasher *h, uint64_t v) {
    put_u32(h, (uint32_t)v);
    put_u32(h, (uint32_t)(v >> 32));
}

static void put_f32(hasher *h, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(h, u);
}

static void put_str(hasher *h, const char *s) {
    size_t n = strlen(s);
    put_u32(h, (uint32_t)n);
    put(h, s, n);
}

static kl_status begin(hasher *h) {
    h->n = 0;
    if (kl_sha256_init(&h->sha) != 0)
        return kl_seterr(KL_EINTERNAL, "SHA-256 unavailable from OpenSSL");
    return KL_OK;
}

static kl_status finish(hasher *h, char *out) {
    flush(h);
    unsigned char md[32];
    kl_sha256_final(&h->sha, md);
    memcpy(out, "sha256:", 7);
    kl_sha256_hex(md, out + 7);
    return KL_OK;
}

kl_status kl_digest_dataset(const kl_dataset *ds, char *out) {
    hasher local, *hp = &local;
    KL_TRY(begin(hp));
    static const char magic[16] = "kiln-dataset-v1";
    put(hp, magic, sizeof magic);
    put_u64(hp, (uint64_t)ds->n);
    put_u64(hp, (uint64_t)ds->d);
    put_u32(hp, ds->y ? 1u : ds->t ? 2u : 0u);
    int64_t total = ds->n * ds->d;
    for (int64_t i = 0; i < total; i++)
        put_f32(hp, ds->x[i]);
    for (int64_t i = 0; ds->y && i < ds->n; i++)
        put_u32(hp, (uint32_t)ds->y[i]);
    for (int64_t i = 0; !ds->y && ds->t && i < ds->n; i++)
        put_f32(hp, ds->t[i]);
    return finish(hp, out);
}

kl_status kl_digest_csv(const kl_csv_table *t, char *out) {
    hasher h;
    KL_TRY(begin(&h));
    static const char magic[12] = "kiln-csv-v1";
    put(&h, magic, sizeof magic);
    put_u64(&h, (uint64_t)t->n_rows);
    put_u64(&h, (uint64_t)t->n_cols);
    for (int c = 0; c < t->n_cols; c++)
        put_str(&h, kl_csv_colname(t, c));
    for (int64_t r = 0; r < t->n_rows; r++)
        for (int c = 0; c < t->n_cols; c++)
            put_str(&h, kl_csv_cell(t, r, c));
    return finish(&h, out);
}
