/* snapshot.c — content-addressed dataset snapshots in a local store (see snapshot.h). */
#include "data/snapshot.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/profile.h"
#include "runtime/fileio.h"
#include "runtime/sha256.h"

#define MANIFEST "manifest.json"
#define MANIFEST_MAX (64u << 20)

kl_status kl_snapshot_default_store(char *buf, size_t size) {
    const char *env = getenv("KILN_DATA_STORE");
    if (env && *env) {
        snprintf(buf, size, "%s", env);
        return KL_OK;
    }
    const char *home = getenv("HOME");
    if (!home || !*home)
        return kl_seterr(KL_EINVAL, "no data store: set KILN_DATA_STORE or HOME, or pass --store");
    snprintf(buf, size, "%s/.cache/kiln/datasets", home);
    return KL_OK;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Copies src to dst while hashing it; hex gets the SHA-256, *bytes the size. */
static kl_status copy_hash(const char *src, const char *dst, char hex[65], int64_t *bytes) {
    FILE *in = fopen(src, "rb");
    if (!in) return kl_seterr(KL_EIO, "cannot open \"%s\": %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return kl_seterr(KL_EIO, "cannot create \"%s\": %s", dst, strerror(errno));
    }
    kl_sha256 h;
    if (kl_sha256_init(&h)) {
        fclose(in);
        fclose(out);
        return kl_seterr(KL_ENOMEM, "SHA-256 context");
    }
    static _Thread_local unsigned char buf[1 << 16];
    size_t n;
    int64_t total = 0;
    kl_status st = KL_OK;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        kl_sha256_update(&h, buf, n);
        total += (int64_t)n;
        if (fwrite(buf, 1, n, out) != n) {
            st = kl_seterr(KL_EIO, "writing \"%s\": %s", dst, strerror(errno));
            break;
        }
    }
    if (st == KL_OK && ferror(in)) st = kl_seterr(KL_EIO, "reading \"%s\"", src);
    unsigned char d[32];
    kl_sha256_final(&h, d);
    kl_sha256_hex(d, hex);
    fclose(in);
    if ((fflush(out) || fsync(fileno(out))) && st == KL_OK)
        st = kl_seterr(KL_EIO, "writing \"%s\": %s", dst, strerror(errno));
    if (fclose(out) && st == KL_OK) st = kl_seterr(KL_EIO, "writing \"%s\"", dst);
    *bytes = total;
    return st;
}

static void utc_now(char *buf, size_t size) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The dataset entry of a manifest for a profile. */
static cJSON *dataset_json(const kl_snapshot_input *in, const kl_data_profile *p) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "file", base_name(in->path));
    if (in->labels)
        cJSON_AddStringToObject(d, "labels", base_name(in->labels));
    else
        cJSON_AddNullToObject(d, "labels");
    cJSON_AddStringToObject(d, "format", p->format);
    cJSON_AddNumberToObject(d, "rows", (double)p->rows);
    cJSON_AddStringToObject(d, "digest", p->digest);
    cJSON *schema = cJSON_AddObjectToObject(d, "schema");
    if (!strcmp(p->format, "csv")) {
        cJSON *cols = cJSON_AddArrayToObject(schema, "columns");
        for (int j = 0; j < p->n_cols; j++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "name", p->cols[j].name);
            cJSON_AddStringToObject(c, "type", kl_col_type_name(p->cols[j].type));
            cJSON_AddItemToArray(cols, c);
        }
    } else {
        cJSON *shape = cJSON_AddArrayToObject(schema, "shape");
        for (int k = 0; k < p->n_dims; k++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)p->shape[k]));
    }
    return d;
}

/* The combined digest of several dataset digests (see snapshot.h). */
static void combine_digests(char digests[][KL_DIGEST_LEN], int n, char out[KL_DIGEST_LEN]) {
    if (n == 1) {
        memcpy(out, digests[0], KL_DIGEST_LEN);
        return;
    }
    kl_sha256 h;
    kl_sha256_init(&h);
    kl_sha256_update(&h, "kiln-snapshot-v1", 17);
    for (int i = 0; i < n; i++)
        kl_sha256_update(&h, digests[i], strlen(digests[i]));
    unsigned char d[32];
    char hex[65];
    kl_sha256_final(&h, d);
    kl_sha256_hex(d, hex);
    snprintf(out, KL_DIGEST_LEN, "sha256:%s", hex);
}

/* Reads every input: the manifest's dataset entries (into datasets) and the digest. */
static kl_status profile_inputs(const kl_snapshot_input *in, int n, cJSON *datasets,
                                char digest[KL_DIGEST_LEN]) {
    if (n < 1) return kl_seterr(KL_EINVAL, "a snapshot needs at least one file");
    char(*digests)[KL_DIGEST_LEN] = calloc((size_t)n, sizeof *digests);
    if (!digests) return kl_seterr(KL_ENOMEM, "snapshot digests");
    for (int i = 0; i < n; i++) {
        /* Files keep their names in the store: two of one name would overwrite each other. */
        const char *names[2] = {base_name(in[i].path), in[i].labels ? base_name(in[i].labels) : 0};
        for (int j = 0; j <= i; j++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    const char *other = b ? in[j].labels : in[j].path;
                    if (!names[a] || !other || (j == i && b >= a)) continue;
                    if (!strcmp(names[a], base_name(other))) {
                        free(digests);
                        return kl_seterr(KL_EINVAL,
                                         "two files named \"%s\": a snapshot keeps file names",
                                         names[a]);
                    }
                }
        if (!strcmp(names[0], MANIFEST) || (names[1] && !strcmp(names[1], MANIFEST))) {
            free(digests);
            return kl_seterr(KL_EINVAL, "a data file may not be called %s", MANIFEST);
        }
        kl_data_profile p;
        kl_status st = kl_data_profile_file(in[i].path, in[i].labels, &p);
        if (st != KL_OK) {
            free(digests);
            return st;
        }
        cJSON_AddItemToArray(datasets, dataset_json(&in[i], &p));
        memcpy(digests[i], p.digest, KL_DIGEST_LEN);
        kl_data_profile_free(&p);
    }
    combine_digests(digests, n, digest);
    free(digests);
    return KL_OK;
}

/* kl_snapshot_stage, except that when <root>/<hex of the digest> exists already (root may be
 * NULL) nothing is copied and *exists is set: the data has been read, the files need not be. */
static kl_status stage(const kl_snapshot_input *in, int n, const char *name, const char *dir,
                       const char *root, char digest[KL_DIGEST_LEN], int *exists) {
    cJSON *doc = cJSON_CreateObject();
    if (!doc) return kl_seterr(KL_ENOMEM, "manifest");
    cJSON_AddNumberToObject(doc, "kiln_snapshot", 1);
    cJSON *dg = cJSON_AddStringToObject(doc, "digest", "");
    cJSON_AddStringToObject(doc, "name", name ? name : "");
    char now[32];
    utc_now(now, sizeof now);
    cJSON_AddStringToObject(doc, "created", now);
    cJSON *datasets = cJSON_AddArrayToObject(doc, "datasets");
    cJSON *files = cJSON_AddArrayToObject(doc, "files");
    kl_status st = profile_inputs(in, n, datasets, digest);
    if (st == KL_OK && root) {
        char final[4200];
        struct stat sb;
        snprintf(final, sizeof final, "%s/%s", root, digest + 7);
        if (stat(final, &sb) == 0) {
            *exists = 1;
            cJSON_Delete(doc);
            return KL_OK;
        }
    }
    for (int i = 0; st == KL_OK && i < n; i++)
        for (int k = 0; st == KL_OK && k < 2; k++) {
            const char *src = k ? in[i].labels : in[i].path;
            if (!src) continue;
            char dst[4096], hex[65];
            int64_t bytes = 0;
            snprintf(dst, sizeof dst, "%s/%s", dir, base_name(src));
            st = copy_hash(src, dst, hex, &bytes);
            if (st != KL_OK) break;
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "path", base_name(src));
            cJSON_AddStringToObject(f, "sha256", hex);
            cJSON_AddNumberToObject(f, "bytes", (double)bytes);
            cJSON_AddStringToObject(f, "role", k ? "labels" : "data");
            cJSON_AddItemToArray(files, f);
        }
    char *text = NULL;
    if (st == KL_OK) {
        cJSON_SetValuestring(dg, digest);
        text = cJSON_Print(doc);
        if (!text) st = kl_seterr(KL_ENOMEM, "manifest");
    }
    if (st == KL_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, MANIFEST);
        st = kl_file_write_atomic(path, text, strlen(text));
    }
    free(text);
    cJSON_Delete(doc);
    return st;
}

kl_status kl_snapshot_stage(const kl_snapshot_input *in, int n, const char *name, const char *dir,
                            char digest[KL_DIGEST_LEN]) {
    int exists = 0;
    return stage(in, n, name, dir, NULL, digest, &exists);
}

void kl_snapshot_remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4096];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}

kl_status kl_snapshot_save(const char *store, const kl_snapshot_input *in, int n, const char *name,
                           char digest[KL_DIGEST_LEN], int *created) {
    if (created) *created = 0;
    char root[4096];
    snprintf(root, sizeof root, "%s/sha256", store);
    KL_TRY(kl_preferr(kl_file_mkdirs(root), "data store \"%s\"", store));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", root);
    if (!mkdtemp(tmp))
        return kl_seterr(KL_EIO, "data store \"%s\": cannot create a staging directory: %s", store,
                         strerror(errno));
    /* Stored already: the content is the same by its name, so nothing is copied. */
    int exists = 0;
    kl_status st = stage(in, n, name, tmp, root, digest, &exists);
    if (st != KL_OK || exists) {
        kl_snapshot_remove_dir(tmp);
        return st;
    }
    char final[4200];
    snprintf(final, sizeof final, "%s/%s", root, digest + 7);
    if (rename(tmp, final) != 0) {
        int e = errno;
        kl_snapshot_remove_dir(tmp);
        /* Another process stored the same snapshot between our stat and rename. */
        if (e == EEXIST || e == ENOTEMPTY) return KL_OK;
        return kl_seterr(KL_EIO, "data store \"%s\": cannot move the snapshot into place: %s",
                         store, strerror(e));
    }
    if (created) *created = 1;
    return KL_OK;
}

static int is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int kl_snapshot_is_ref(const char *s) {
    const char *h = !strncmp(s, "sha256:", 7) ? s + 7 : s;
    size_t n = strlen(h);
    return n >= 4 && n <= 64 && is_hex(h, n);
}

/* Parses <dir>/manifest.json; the caller deletes *out. */
static kl_status read_manifest(const char *dir, cJSON **out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST);
    char *text = NULL;
    size_t len = 0;
    KL_TRY(kl_file_read(path, MANIFEST_MAX, &text, &len));
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        return kl_seterr(KL_EFORMAT, "\"%s\" is not a JSON object", path);
    }
    return KL_OK;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

kl_status kl_snapshot_resolve(const char *store, const char *ref, kl_snapshot_files *out) {
    memset(out, 0, sizeof *out);
    if (!kl_snapshot_is_ref(ref))
        return kl_seterr(KL_EINVAL,
                         "\"%s\" is not a snapshot digest (sha256:<hex>, at least 4 hex digits)",
                         ref);
    const char *prefix = !strncmp(ref, "sha256:", 7) ? ref + 7 : ref;
    size_t plen = strlen(prefix);
    char root[4096];
    snprintf(root, sizeof root, "%s/sha256", store);
    DIR *d = opendir(root);
    if (!d) return kl_seterr(KL_ENOTFOUND, "no snapshot %s: the store \"%s\" is empty", ref, store);
    char found[65] = "", others[256] = "";
    int matches = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strlen(e->d_name) != 64 || !is_hex(e->d_name, 64)) continue;
        if (strncmp(e->d_name, prefix, plen)) continue;
        if (matches++) {
            size_t used = strlen(others);
            snprintf(others + used, sizeof others - used, "%s sha256:%.12s", used ? "," : "",
                     e->d_name);
        } else {
            snprintf(found, sizeof found, "%s", e->d_name);
        }
    }
    closedir(d);
    if (!matches) return kl_seterr(KL_ENOTFOUND, "no snapshot %s in \"%s\"", ref, store);
    if (matches > 1)
        return kl_seterr(KL_EINVAL, "%s is ambiguous in \"%s\": sha256:%.12s,%s", ref, store, found,
                         others);
    snprintf(out->digest, sizeof out->digest, "sha256:%s", found);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, found);
    cJSON *m = NULL;
    KL_TRY(kl_preferr(read_manifest(dir, &m), "snapshot %s", out->digest));
    kl_status st = KL_OK;
    cJSON *ds = cJSON_GetObjectItem(m, "datasets");
    cJSON *name = cJSON_GetObjectItem(m, "name");
    int n = cJSON_IsArray(ds) ? cJSON_GetArraySize(ds) : 0;
    out->dir = strdup(dir);
    out->name = strdup(cJSON_IsString(name) ? name->valuestring : "");
    out->paths = calloc((size_t)(n ? n : 1), sizeof *out->paths);
    out->labels = calloc((size_t)(n ? n : 1), sizeof *out->labels);
    if (!out->dir || !out->name || !out->paths || !out->labels)
        st = kl_seterr(KL_ENOMEM, "snapshot %s", out->digest);
    if (st == KL_OK && n < 1)
        st = kl_seterr(KL_EFORMAT, "snapshot %s: its manifest lists no datasets", out->digest);
    for (int i = 0; st == KL_OK && i < n; i++) {
        cJSON *it = cJSON_GetArrayItem(ds, i);
        cJSON *file = cJSON_GetObjectItem(it, "file"), *lab = cJSON_GetObjectItem(it, "labels");
        if (!cJSON_IsString(file) || strchr(file->valuestring, '/') ||
            (lab && !cJSON_IsNull(lab) &&
             (!cJSON_IsString(lab) || strchr(lab->valuestring, '/')))) {
            st = kl_seterr(KL_EFORMAT, "snapshot %s: dataset %d of its manifest is malformed",
                           out->digest, i);
            break;
        }
        out->n = i + 1;
        out->paths[i] = join(dir, file->valuestring);
        if (cJSON_IsString(lab)) out->labels[i] = join(dir, lab->valuestring);
        if (!out->paths[i] || (cJSON_IsString(lab) && !out->labels[i]))
            st = kl_seterr(KL_ENOMEM, "snapshot %s", out->digest);
    }
    cJSON_Delete(m);
    if (st != KL_OK) kl_snapshot_files_free(out);
    return st;
}

void kl_snapshot_files_free(kl_snapshot_files *f) {
    for (int i = 0; i < f->n; i++) {
        free(f->paths[i]);
        free(f->labels[i]);
    }
    free(f->paths);
    free(f->labels);
    free(f->dir);
    free(f->name);
    memset(f, 0, sizeof *f);
}

static int cmp_entry(const void *a, const void *b) {
    const kl_snapshot_entry *x = a, *y = b;
    int c = strcmp(y->created, x->created);
    return c ? c : strcmp(x->digest, y->digest);
}

kl_status kl_snapshot_list(const char *store, kl_snapshot_entry **out, int *n) {
    *out = NULL;
    *n = 0;
    char root[4096];
    snprintf(root, sizeof root, "%s/sha256", store);
    DIR *d = opendir(root);
    if (!d) return errno == ENOENT ? KL_OK : kl_seterr(KL_EIO, "cannot read \"%s\"", root);
    kl_snapshot_entry *v = NULL;
    int count = 0, cap = 0;
    struct dirent *e;
    kl_status st = KL_OK;
    while ((e = readdir(d)) && st == KL_OK) {
        if (strlen(e->d_name) != 64 || !is_hex(e->d_name, 64)) continue;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        cJSON *m = NULL;
        if (read_manifest(dir, &m) != KL_OK) continue; /* not a snapshot: leave it out */
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            kl_snapshot_entry *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                cJSON_Delete(m);
                st = kl_seterr(KL_ENOMEM, "listing \"%s\"", store);
                break;
            }
            v = nv;
        }
        kl_snapshot_entry *x = &v[count++];
        memset(x, 0, sizeof *x);
        snprintf(x->digest, sizeof x->digest, "sha256:%s", e->d_name);
        cJSON *it;
        if (cJSON_IsString(it = cJSON_GetObjectItem(m, "name")))
            snprintf(x->name, sizeof x->name, "%s", it->valuestring);
        if (cJSON_IsString(it = cJSON_GetObjectItem(m, "created")))
            snprintf(x->created, sizeof x->created, "%s", it->valuestring);
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(m, "datasets")) {
            cJSON *r = cJSON_GetObjectItem(it, "rows");
            if (cJSON_IsNumber(r)) x->rows += (int64_t)r->valuedouble;
        }
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(m, "files")) {
            cJSON *b = cJSON_GetObjectItem(it, "bytes");
            if (cJSON_IsNumber(b)) x->bytes += (int64_t)b->valuedouble;
            x->n_files++;
        }
        cJSON_Delete(m);
    }
    closedir(d);
    if (st != KL_OK) {
        free(v);
        return st;
    }
    if (count) qsort(v, (size_t)count, sizeof *v, cmp_entry);
    *out = v;
    *n = count;
    return KL_OK;
}
