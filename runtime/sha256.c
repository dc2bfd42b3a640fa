/* sha256.c — SHA-256 over OpenSSL's EVP interface (the low-level SHA256_* calls are deprecated). */
#include "runtime/sha256.h"

#include <openssl/evp.h>

int kl_sha256_init(kl_sha256 *h) {
    h->evp = EVP_MD_CTX_new();
    if (!h->evp) return -1;
    if (EVP_DigestInit_ex(h->evp, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->evp);
        h->evp = NULL;
        return -1;
    }
    return 0;
}

void kl_sha256_update(kl_sha256 *h, const void *p, size_t n) {
    if (h->evp && n) EVP_DigestUpdate(h->evp, p, n);
}

void kl_sha256_final(kl_sha256 *h, unsigned char out[32]) {
    unsigned int len = 32;
    if (h->evp) {
        EVP_DigestFinal_ex(h->evp, out, &len);
        EVP_MD_CTX_free(h->evp);
        h->evp = NULL;
    }
}

void kl_sha256_hex(const unsigned char digest[32], char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}
