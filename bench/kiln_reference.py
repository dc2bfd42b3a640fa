"""kiln's data order and learning-rate schedule re-derived in Python, and an IDX reader, so the
benchmarks can feed a peer engine exactly the batches kiln trains on.

- splitmix64 / seed_mix / permutation: data/split.c (kl_splitmix64, kl_seed_mix,
  kl_permutation): an unbiased Fisher-Yates driven by splitmix64; epoch e's order is
  permutation(n, seed_mix(seed, e)).
- kiln_lr: trainer/schedule.c (linear warm-up, then cosine to min_lr).
"""
import gzip
import math
import struct

M64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def seed_mix(a, b):
    s = a ^ 0x6A09E667F3BCC909
    s, h = splitmix64(s)
    s = h ^ b
    _, out = splitmix64(s)
    return out


def permutation(n, seed):
    """kiln's kl_permutation, as a list of row indices."""
    a = list(range(n))
    st = seed
    for i in range(n - 1, 0, -1):
        bound = i + 1
        threshold = ((1 << 64) - bound) % bound
        while True:
            st, r = splitmix64(st)
            if r >= threshold:
                break
        j = r % bound
        a[i], a[j] = a[j], a[i]
    return a


def kiln_lr(lr, min_lr, warmup, step, total):
    """kiln's schedule: linear warm-up, then cosine from lr to min_lr over the remaining steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = total - warmup
    if span <= 1:
        return lr
    progress = min(1.0, (step - warmup) / (span - 1))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def read_idx(path):
    """An unsigned-byte IDX file (plain or .gz) as a numpy array."""
    import numpy as np

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
