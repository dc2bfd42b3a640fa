/* sha256.h — incremental SHA-256 (OpenSSL EVP underneath), for digests of data and files. */
#ifndef KL_SHA256_H
#define KL_SHA256_H

#include <stddef.h>

typedef struct {
    void *evp; /* EVP_MD_CTX*, owned */
} kl_sha256;

int kl_sha256_init(kl_sha256 *h); /* 0 ok, -1 failure */
void kl_sha256_update(kl_sha256 *h, const void *p, size_t n);
void kl_sha256_final(kl_sha256 *h, unsigned char out[32]); /* also frees the context */
/* Writes 64 lowercase hex digits and a NUL into hex. */
void kl_sha256_hex(const unsigned char digest[32], char hex[65]);

#endif
