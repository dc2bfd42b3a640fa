/* device.h — where memory lives and where ops run.
 *
 * The CPU is always there. CUDA is there when the build found nvcc (KILN_HAVE_CUDA) and the
 * process sees a GPU; otherwise kl_device_resolve falls back to the CPU with a one-line notice.
 */
#ifndef KL_DEVICE_H
#define KL_DEVICE_H

#include <stddef.h>

#include "runtime/status.h"

typedef enum {
    KL_DEV_CPU = 0,
    KL_DEV_CUDA = 1,
} kl_device_kind;

typedef struct {
    kl_device_kind kind; /* CPU or CUDA */
    int index;           /* CUDA ordinal; 0 for the CPU */
} kl_device;

static inline kl_device kl_cpu(void) {
    kl_device d = {KL_DEV_CPU, 0};
    return d;
}

/* Parses "cpu", "cuda", "cuda:N" or "auto". */
kl_status kl_device_parse(const char *text, kl_device *out, int *is_auto);

/* Resolves a requested device to one this process can use. "auto" without a usable GPU resolves
 * to the CPU and prints one notice line to stderr (unless quiet); "cuda" or "cuda:N" without one
 * is an error saying why (no device, no driver, a driver older than the runtime). */
kl_status kl_device_resolve(const char *text, int quiet, kl_device *out);

/* "cpu" or "cuda:N" */
const char *kl_device_name(kl_device d, char *buf, int cap);

/* Device memory: on the CPU, 64-byte aligned host memory. */
kl_status kl_dev_malloc(kl_device d, size_t bytes, void **out);
void kl_dev_free(kl_device d, void *p);
kl_status kl_dev_memset0(kl_device d, void *p, size_t bytes);
/* Host memory the device can read and write asynchronously (pinned for CUDA; plain on the
 * CPU), for per-step results such as the loss and for batch staging. */
kl_status kl_host_alloc(kl_device d, size_t bytes, void **out);
void kl_host_free(kl_device d, void *p);
/* Copies between host and a device (or host to host). */
kl_status kl_dev_copy_to_host(kl_device d, void *host_dst, const void *dev_src, size_t bytes);
kl_status kl_dev_copy_from_host(kl_device d, void *dev_dst, const void *host_src, size_t bytes);

#endif
