/* fileio.c — whole-file reads, atomic writes and directory creation. */
#include "runtime/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

kl_status kl_file_read(const char *path, size_t max_len, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        kl_status s = errno == ENOENT ? KL_ENOTFOUND : KL_EIO;
        return kl_seterr(s, "cannot open \"%s\": %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return kl_seterr(KL_EIO, "\"%s\" is not a regular file", path);
    }
    if ((size_t)st.st_size > max_len) {
        fclose(f);
        return kl_seterr(KL_EFORMAT, "\"%s\" is %lld bytes, more than the %zu allowed", path,
                         (long long)st.st_size, max_len);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return kl_seterr(KL_ENOMEM, "reading \"%s\": cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return kl_seterr(KL_EIO, "cannot read \"%s\": got %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return KL_OK;
}

kl_status kl_file_write_atomic(const char *path, const void *data, size_t len) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return kl_seterr(KL_ENOMEM, "writing \"%s\": out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        kl_status s = kl_seterr(KL_EIO, "cannot create \"%s\": %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    size_t put = len ? fwrite(data, 1, len, f) : 0;
    /* fflush + fsync before the rename: a crash then leaves the old file or the new one. */
    int bad = put != len || fflush(f) != 0 || fsync(fileno(f)) != 0;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        kl_status s = kl_seterr(KL_EIO, "cannot write \"%s\": %s", tmp, strerror(errno));
        remove(tmp);
        free(tmp);
        return s;
    }
    if (rename(tmp, path) != 0) {
        kl_status s =
            kl_seterr(KL_EIO, "cannot rename \"%s\" to \"%s\": %s", tmp, path, strerror(errno));
        remove(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return KL_OK;
}

kl_status kl_file_mkdirs(const char *dir) {
    size_t n = strlen(dir);
    if (n == 0) return kl_seterr(KL_EINVAL, "empty directory name");
    char *p = malloc(n + 1);
    if (!p) return kl_seterr(KL_ENOMEM, "mkdir \"%s\": out of memory", dir);
    memcpy(p, dir, n + 1);
    /* Walk each '/' so missing parents are made first; the last pass makes dir itself. */
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            kl_status s =
                kl_seterr(KL_EIO, "cannot create directory \"%s\": %s", p, strerror(errno));
            free(p);
            return s;
        }
        p[i] = c;
    }
    struct stat st;
    int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    if (!ok) return kl_seterr(KL_EIO, "\"%s\" exists and is not a directory", dir);
    return KL_OK;
}

kl_status kl_file_write_text_in(const char *dir, const char *name, char *text) {
    if (!text) return kl_seterr(KL_ENOMEM, "%s: building the text", name);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kl_status s = kl_file_write_atomic(path, text, strlen(text));
    free(text);
    return s == KL_OK ? s : kl_preferr(s, "%s", path);
}
