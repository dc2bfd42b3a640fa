/* model_uri.c — models:/ URIs downloaded into a content-addressed, verified cache. */
#include "tracking/model_uri.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/fileio.h"
#include "runtime/sha256.h" /* file digests and the manifest's key */
#include "tracking/mlflow.h"

#define PATH_CAP 4096
#define MANIFEST_CAP ((size_t)16 << 20) /* a manifest longer than this is not one of ours */

kl_status kl_model_uri_cache_dir(char *out, size_t cap) {
    const char *v = getenv("KILN_MODEL_CACHE");
    int n;
    if (v && *v) {
        n = snprintf(out, cap, "%s", v);
    } else if ((v = getenv("XDG_CACHE_HOME")) && *v) {
        n = snprintf(out, cap, "%s/kiln/models", v);
    } else if ((v = getenv("HOME")) && *v) {
        n = snprintf(out, cap, "%s/.cache/kiln/models", v);
    } else {
        return kl_seterr(KL_ENOTFOUND, "no model cache: set KILN_MODEL_CACHE (or HOME)");
    }
    if (n < 0 || (size_t)n >= cap) return kl_seterr(KL_EINVAL, "model cache path too long");
    return KL_OK;
}

static void sha256_text(const char *s, size_t n, char hex[65]) {
    kl_sha256 h;
    unsigned char d[32];
    kl_sha256_init(&h);
    kl_sha256_update(&h, s, n);
    kl_sha256_final(&h, d);
    kl_sha256_hex(d, hex);
}

static kl_status sha256_file(const char *path, char hex[65], long long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return kl_seterr(KL_EIO, "cannot open \"%s\": %s", path, strerror(errno));
    kl_sha256 h;
    if (kl_sha256_init(&h)) {
        fclose(f);
        return kl_seterr(KL_EINTERNAL, "SHA-256 unavailable");
    }
    static _Thread_local unsigned char buf[1 << 16];
    size_t n;
    *size = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        kl_sha256_update(&h, buf, n);
        *size += (long long)n;
    }
    int err = ferror(f);
    fclose(f);
    unsigned char d[32];
    kl_sha256_final(&h, d);
    if (err) return kl_seterr(KL_EIO, "reading \"%s\" failed", path);
    kl_sha256_hex(d, hex);
    return KL_OK;
}

/* A growable text. */
typedef struct {
    char *p;    /* text, NUL-terminated */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
} text_t;

static kl_status text_add(text_t *t, const char *s) {
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) return kl_seterr(KL_ENOMEM, "building a manifest");
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n + 1);
    t->len += n;
    return KL_OK;
}

/* Appends "<sha256> <size> <rel>\n" for every regular file under dir, sorted by path. */
static kl_status manifest_add(text_t *t, const char *dir, const char *rel) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) return kl_seterr(KL_EIO, "cannot list \"%s\": %s", dir, strerror(errno));
    kl_status s = KL_OK;
    for (int i = 0; i < n && !s; i++) {
        const char *name = names[i]->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        if (strchr(name, '\n')) {
            s = kl_seterr(KL_EFORMAT, "file name with a newline under \"%s\"", dir);
            break;
        }
        char path[PATH_CAP], crel[PATH_CAP];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
            snprintf(crel, sizeof crel, "%s%s%s", rel, *rel ? "/" : "", name) >= (int)sizeof crel) {
            s = kl_seterr(KL_EINVAL, "path too long under \"%s\"", dir);
        } else if (lstat(path, &st) != 0) {
            s = kl_seterr(KL_EIO, "cannot stat \"%s\": %s", path, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            s = manifest_add(t, path, crel);
        } else if (S_ISREG(st.st_mode)) {
            char hex[65], line[PATH_CAP + 128];
            long long size = 0;
            s = sha256_file(path, hex, &size);
            if (!s) {
                snprintf(line, sizeof line, "%s %lld %s\n", hex, size, crel);
                s = text_add(t, line);
            }
        } else {
            s = kl_seterr(KL_EFORMAT, "\"%s\" is neither a file nor a directory", path);
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return s;
}

static kl_status manifest(const char *dir, text_t *t) {
    memset(t, 0, sizeof *t);
    kl_status s = text_add(t, "");
    if (!s) s = manifest_add(t, dir, "");
    if (s) {
        free(t->p);
        t->p = NULL;
    }
    return s;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path) {
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Does <cache>/sha256/<key> still hold exactly what its manifest lists? */
static int intact(const char *cache, const char *key) {
    char dir[PATH_CAP], mpath[PATH_CAP + 16];
    snprintf(dir, sizeof dir, "%s/sha256/%s", cache, key);
    snprintf(mpath, sizeof mpath, "%s.manifest", dir);
    char *want = NULL;
    size_t len = 0;
    if (kl_file_read(mpath, MANIFEST_CAP, &want, &len) != KL_OK) return 0;
    char hex[65];
    sha256_text(want, len, hex);
    int ok = !strcmp(hex, key);
    text_t have;
    if (ok && manifest(dir, &have) == KL_OK) {
        ok = have.len == len && !memcmp(have.p, want, len);
        free(have.p);
    } else {
        ok = 0;
    }
    free(want);
    return ok;
}

/* Moves the downloaded tmp directory into the cache under its content key. */
static kl_status store(const char *cache, const char *tmp, char key[65]) {
    text_t m;
    KL_TRY(manifest(tmp, &m));
    sha256_text(m.p, m.len, key);
    char dir[PATH_CAP], mpath[PATH_CAP + 16];
    snprintf(dir, sizeof dir, "%s/sha256/%s", cache, key);
    snprintf(mpath, sizeof mpath, "%s.manifest", dir);
    kl_status s = kl_file_write_atomic(mpath, m.p, m.len);
    free(m.p);
    if (s) return s;
    if (rename(tmp, dir) == 0) return KL_OK;
    if (errno != EEXIST && errno != ENOTEMPTY)
        return kl_seterr(KL_EIO, "cannot move \"%s\" to \"%s\": %s", tmp, dir, strerror(errno));
    /* Already there (another resolver, or an earlier copy): keep it if intact. */
    if (intact(cache, key)) {
        rm_tree(tmp);
        return KL_OK;
    }
    char old[PATH_CAP + 32];
    snprintf(old, sizeof old, "%s.old-%ld", dir, (long)getpid());
    if (rename(dir, old) == 0) rm_tree(old);
    if (rename(tmp, dir) != 0)
        return kl_seterr(KL_EIO, "cannot move \"%s\" to \"%s\": %s", tmp, dir, strerror(errno));
    return KL_OK;
}

static kl_status fetch(kl_mlflow *c, const char *uri, char *local_dir, size_t cap) {
    char cache[PATH_CAP / 2], location[512], version[32];
    KL_TRY(kl_model_uri_cache_dir(cache, sizeof cache));
    KL_TRY(kl_mlflow_models_uri(c, uri, location, version));
    char refs[PATH_CAP / 2 + 16], blobs[PATH_CAP / 2 + 16];
    snprintf(refs, sizeof refs, "%s/refs", cache);
    snprintf(blobs, sizeof blobs, "%s/sha256", cache);
    KL_TRY(kl_file_mkdirs(refs));
    KL_TRY(kl_file_mkdirs(blobs));

    /* The reference: which content this server's artifact location held last time. */
    char id[2048], ref[65], ref_path[PATH_CAP + 80], key[65] = "";
    int n = snprintf(id, sizeof id, "%s\n%s", kl_mlflow_uri(c), location);
    sha256_text(id, (size_t)(n < (int)sizeof id ? n : (int)sizeof id - 1), ref);
    snprintf(ref_path, sizeof ref_path, "%s/%s", refs, ref);
    char *text = NULL;
    size_t len = 0;
    if (kl_file_read(ref_path, 128, &text, &len) == KL_OK && len >= 64) {
        memcpy(key, text, 64);
        key[64] = '\0';
    }
    free(text);
    if (!key[0] || !intact(cache, key)) {
        char tmp[PATH_CAP];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(tmp, sizeof tmp, "%s/tmp-%ld-%ld%09ld", cache, (long)getpid(), (long)ts.tv_sec,
                 ts.tv_nsec);
        kl_status s = kl_mlflow_download(c, location, "", tmp);
        struct stat st;
        if (!s && (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode)))
            s = kl_seterr(KL_EFORMAT, "%s is a single file, not a model bundle directory",
                          location);
        if (!s) s = store(cache, tmp, key);
        if (s) {
            rm_tree(tmp);
            return s;
        }
        char line[80];
        snprintf(line, sizeof line, "%s\n", key);
        KL_TRY(kl_file_write_atomic(ref_path, line, strlen(line)));
    }
    n = snprintf(local_dir, cap, "%s/%s", blobs, key);
    if (n < 0 || (size_t)n >= cap) return kl_seterr(KL_EINVAL, "cache path too long");
    return KL_OK;
}

kl_status kl_model_uri_resolve(const char *uri_or_path, char *local_dir, size_t cap) {
    if (strncmp(uri_or_path, "models:/", 8) != 0) {
        if ((size_t)snprintf(local_dir, cap, "%s", uri_or_path) >= cap)
            return kl_seterr(KL_EINVAL, "model path too long");
        return KL_OK;
    }
    kl_mlflow *c;
    kl_status s = kl_mlflow_open(NULL, &c);
    if (!s) {
        s = fetch(c, uri_or_path, local_dir, cap);
        kl_mlflow_close(c);
    }
    return s ? kl_preferr(s, "%s", uri_or_path) : KL_OK;
}
