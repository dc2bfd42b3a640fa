/* device.c — device parsing, resolution and memory for the CPU (and CUDA when built in). */
#include "runtime/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_api.h" /* kl_cuda_device_count, kl_cuda_malloc/free/memcpy (stubs without CUDA) */

kl_status kl_device_parse(const char *text, kl_device *out, int *is_auto) {
    if (is_auto) *is_auto = 0;
    if (!text || strcmp(text, "auto") == 0) {
        if (is_auto) *is_auto = 1;
        out->kind = KL_DEV_CUDA;
        out->index = 0;
        return KL_OK;
    }
    if (strcmp(text, "cpu") == 0) {
        *out = kl_cpu();
        return KL_OK;
    }
    if (strncmp(text, "cuda", 4) == 0) {
        out->kind = KL_DEV_CUDA;
        out->index = 0;
        if (text[4] == '\0') return KL_OK;
        if (text[4] == ':') {
            char *end = NULL;
            long idx = strtol(text + 5, &end, 10);
            if (end != text + 5 && *end == '\0' && idx >= 0 && idx < 1024) {
                out->index = (int)idx;
                return KL_OK;
            }
        }
    }
    return kl_seterr(KL_EINVAL, "device \"%s\": expected cpu, cuda, cuda:N or auto", text);
}

kl_status kl_device_resolve(const char *text, int quiet, kl_device *out) {
    int is_auto = 0;
    KL_TRY(kl_device_parse(text, out, &is_auto));
    if (out->kind == KL_DEV_CPU) return KL_OK;
    int n = kl_cuda_device_count();
    if (n > out->index && kl_ops_cuda()) return KL_OK;
    /* Asked for by name, a missing GPU is an error (as torch.device("cuda") is); "auto" falls
     * back to the CPU with a notice. */
    if (!is_auto) {
        if (n > 0)
            return kl_seterr(KL_EUNSUPPORTED, "device \"%s\": only %d CUDA device(s) present", text,
                             n);
        return kl_seterr(KL_EUNSUPPORTED, "device \"%s\": CUDA unavailable (%s)", text,
                         kl_cuda_unavailable_reason());
    }
    if (!quiet) {
        if (n > out->index)
            fprintf(stderr,
                    "kiln: notice: this build's CUDA op table is not ready; using the CPU\n");
        else if (n > 0)
            fprintf(stderr, "kiln: notice: cuda:%d not present (%d device(s)); using the CPU\n",
                    out->index, n);
        else
            fprintf(stderr, "kiln: notice: CUDA unavailable (%s); using the CPU\n",
                    kl_cuda_unavailable_reason());
    }
    *out = kl_cpu();
    return KL_OK;
}

const char *kl_device_name(kl_device d, char *buf, int cap) {
    if (d.kind == KL_DEV_CPU)
        snprintf(buf, (size_t)cap, "cpu");
    else
        snprintf(buf, (size_t)cap, "cuda:%d", d.index);
    return buf;
}

kl_status kl_dev_malloc(kl_device d, size_t bytes, void **out) {
    *out = NULL;
    if (bytes == 0) bytes = 64;
    if (d.kind == KL_DEV_CUDA) return kl_cuda_malloc(d.index, bytes, out);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p) return kl_seterr(KL_ENOMEM, "allocating %zu bytes on the CPU", bytes);
    *out = p;
    return KL_OK;
}

void kl_dev_free(kl_device d, void *p) {
    if (!p) return;
    if (d.kind == KL_DEV_CUDA)
        kl_cuda_free(d.index, p);
    else
        free(p);
}

kl_status kl_host_alloc(kl_device d, size_t bytes, void **out) {
    if (d.kind == KL_DEV_CUDA) return kl_cuda_host_alloc(bytes, out);
    return kl_dev_malloc(d, bytes, out);
}

void kl_host_free(kl_device d, void *p) {
    if (!p) return;
    if (d.kind == KL_DEV_CUDA)
        kl_cuda_host_free(p);
    else
        free(p);
}

kl_status kl_dev_memset0(kl_device d, void *p, size_t bytes) {
    if (d.kind == KL_DEV_CUDA) return kl_cuda_memset0(d.index, p, bytes);
    memset(p, 0, bytes);
    return KL_OK;
}

kl_status kl_dev_copy_to_host(kl_device d, void *host_dst, const void *dev_src, size_t bytes) {
    if (d.kind == KL_DEV_CUDA) return kl_cuda_memcpy(d.index, host_dst, dev_src, bytes, 0);
    memcpy(host_dst, dev_src, bytes);
    return KL_OK;
}

kl_status kl_dev_copy_from_host(kl_device d, void *dev_dst, const void *host_src, size_t bytes) {
    if (d.kind == KL_DEV_CUDA) return kl_cuda_memcpy(d.index, dev_dst, host_src, bytes, 1);
    memcpy(dev_dst, host_src, bytes);
    return KL_OK;
}
