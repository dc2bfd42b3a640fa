/* checkpoint.c — atomic, digest-checked training checkpoints. */
#include "trainer/checkpoint.h"

#include "runtime/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK_MAGIC "KILNCKPT"
#define CK_VERSION 1u

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t reserved;
    int64_t n_params, state_len, step, epoch, batch_in_epoch, optimizer_t;
    double best_val_loss;
    int64_t bad_epochs, best_epoch, has_best;
    char arch[128];
} ck_header;

static int write_all(FILE *f, kl_sha256 *h, const void *p, size_t n) {
    kl_sha256_update(h, p, n);
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

kl_status kl_checkpoint_save(const char *path, const kl_checkpoint *c) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return kl_seterr(KL_EIO, "checkpoint \"%s\": cannot create", tmp);
    ck_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CK_MAGIC, 8);
    h.version = CK_VERSION;
    h.n_params = c->n_params;
    h.state_len = c->state_len;
    h.step = c->step;
    h.epoch = c->epoch;
    h.batch_in_epoch = c->batch_in_epoch;
    h.optimizer_t = c->optimizer_t;
    h.best_val_loss = c->best_val_loss;
    h.bad_epochs = c->bad_epochs;
    h.best_epoch = c->best_epoch;
    h.has_best = c->has_best && c->best;
    snprintf(h.arch, sizeof h.arch, "%s", c->arch);
    kl_sha256 sh;
    kl_sha256_init(&sh);
    int bad = write_all(f, &sh, &h, sizeof h) ||
              write_all(f, &sh, c->params, (size_t)c->n_params * sizeof(float)) ||
              write_all(f, &sh, c->state, (size_t)c->state_len * sizeof(float)) ||
              (h.has_best && write_all(f, &sh, c->best, (size_t)c->n_params * sizeof(float)));
    unsigned char digest[32];
    kl_sha256_final(&sh, digest);
    bad = bad || fwrite(digest, 1, sizeof digest, f) != sizeof digest;
    bad = fclose(f) != 0 || bad;
    if (bad) {
        remove(tmp);
        return kl_seterr(KL_EIO, "checkpoint \"%s\": write failed", path);
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return kl_seterr(KL_EIO, "checkpoint \"%s\": cannot rename into place", path);
    }
    return KL_OK;
}

kl_status kl_checkpoint_load(const char *path, kl_checkpoint *c) {
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) return kl_seterr(KL_ENOTFOUND, "checkpoint \"%s\": cannot open", path);
    ck_header h;
    kl_status s = KL_OK;
    kl_sha256 sh;
    kl_sha256_init(&sh);
    if (fread(&h, 1, sizeof h, f) != sizeof h) {
        s = kl_seterr(KL_EFORMAT, "checkpoint \"%s\": truncated header", path);
        goto out;
    }
    if (memcmp(h.magic, CK_MAGIC, 8) != 0 || h.version != CK_VERSION) {
        s = kl_seterr(KL_EFORMAT, "checkpoint \"%s\": not a kiln checkpoint (version %u)", path,
                      CK_VERSION);
        goto out;
    }
    if (h.n_params <= 0 || h.n_params > (1LL << 34) || h.state_len < 0 ||
        h.state_len > 2 * h.n_params) {
        s = kl_seterr(KL_EFORMAT, "checkpoint \"%s\": implausible sizes", path);
        goto out;
    }
    kl_sha256_update(&sh, &h, sizeof h);
    c->n_params = h.n_params;
    c->state_len = h.state_len;
    c->step = h.step;
    c->epoch = h.epoch;
    c->batch_in_epoch = h.batch_in_epoch;
    c->optimizer_t = h.optimizer_t;
    c->best_val_loss = h.best_val_loss;
    c->bad_epochs = h.bad_epochs;
    c->best_epoch = h.best_epoch;
    c->has_best = (int)h.has_best;
    h.arch[sizeof h.arch - 1] = '\0';
    snprintf(c->arch, sizeof c->arch, "%s", h.arch);
    c->params = malloc((size_t)h.n_params * sizeof(float));
    c->state = malloc((size_t)(h.state_len ? h.state_len : 1) * sizeof(float));
    c->best = h.has_best ? malloc((size_t)h.n_params * sizeof(float)) : NULL;
    if (!c->params || !c->state || (h.has_best && !c->best)) {
        s = kl_seterr(KL_ENOMEM, "checkpoint \"%s\": out of memory", path);
        goto out;
    }
    struct {
        void *p;
        size_t n;
    } parts[3] = {{c->params, (size_t)h.n_params * sizeof(float)},
                  {c->state, (size_t)h.state_len * sizeof(float)},
                  {c->best, h.has_best ? (size_t)h.n_params * sizeof(float) : 0}};
    for (int i = 0; i < 3; i++) {
        if (parts[i].n && fread(parts[i].p, 1, parts[i].n, f) != parts[i].n) {
            s = kl_seterr(KL_EFORMAT, "checkpoint \"%s\": truncated", path);
            goto out;
        }
        if (parts[i].n) kl_sha256_update(&sh, parts[i].p, parts[i].n);
    }
    unsigned char want[32], got[32];
    kl_sha256_final(&sh, want);
    if (fread(got, 1, sizeof got, f) != sizeof got || memcmp(want, got, sizeof got) != 0) {
        s = kl_seterr(KL_EFORMAT, "checkpoint \"%s\": digest mismatch (corrupt or truncated)",
                      path);
        goto out;
    }
out:
    if (sh.evp) {
        unsigned char unused[32];
        kl_sha256_final(&sh, unused);
    }
    fclose(f);
    if (s) kl_checkpoint_free(c);
    return s;
}

void kl_checkpoint_free(kl_checkpoint *c) {
    free(c->params);
    free(c->state);
    free(c->best);
    c->params = c->state = c->best = NULL;
}
