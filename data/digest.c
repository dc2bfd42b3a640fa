/* digest.c — SHA-256 (OpenSSL EVP) over the canonical bytes described in digest.h. */
#include "data/digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* Bytes are staged here so the hash sees large updates whatever the host byte order. */
#define STAGE 16384

/* A hash in progress with its staging buffer. */
typedef struct {
    EVP_MD_CTX *ctx;          /* OpenSSL digest context, owned */
    unsigned char buf[STAGE]; /* pending bytes */
    size_t n;                 /* bytes pending in buf */
} hasher;

static void flush(hasher *h) {
    if (h->n) EVP_DigestUpdate(h->ctx, h->buf, h->n);
    h->n = 0;
}

static void put(hasher *h, const void *p, size_t n) {
    if (n > STAGE / 2) {
        flush(h);
        EVP_DigestUpdate(h->ctx, p, n);
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
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        return kl_seterr(KL_EINTERNAL, "SHA-256 unavailable from OpenSSL");
    }
    return KL_OK;
}

static kl_status finish(hasher *h, char *out) {
    flush(h);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    int ok = EVP_DigestFinal_ex(h->ctx, md, &len) == 1 && len == 32;
    EVP_MD_CTX_free(h->ctx);
    if (!ok) return kl_seterr(KL_EINTERNAL, "SHA-256 failed");
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
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
