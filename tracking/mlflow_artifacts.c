/* mlflow_artifacts.c — artifacts through the tracking server's proxy
 * (/api/2.0/mlflow-artifacts/artifacts/...): streamed uploads, listings, recursive downloads. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/fileio.h"
#include "tracking/mlflow_internal.h"

#define PROXY "/api/2.0/mlflow-artifacts/artifacts"
#define PATH_CAP 4096

/* Appends segment to a '/'-joined path, dropping empty parts. */
static int join(char *out, size_t cap, const char *segment) {
    while (*segment == '/')
        segment++;
    size_t n = strlen(segment);
    while (n > 0 && segment[n - 1] == '/')
        n--;
    if (n == 0) return 0;
    size_t len = strlen(out);
    int w = snprintf(out + len, cap - len, "%s%.*s", len ? "/" : "", (int)n, segment);
    return w < 0 || (size_t)w >= cap - len ? -1 : 0;
}

/* A relative artifact path must stay inside the artifact root. */
static int unsafe(const char *rel) {
    if (!rel) return 0;
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if ((n == 2 && !strncmp(p, "..", 2))) return 1;
        p += n;
        while (*p == '/')
            p++;
    }
    return 0;
}

/* The proxy's view of artifact_uri/rel: "1/<run_id>/artifacts/model/MLmodel". Only
 * mlflow-artifacts: URIs (what `mlflow server` hands out when it serves artifacts) go through
 * the proxy; runs:/ and models:/ are resolved first. */
static kl_status proxy_path(kl_mlflow *c, const char *artifact_uri, const char *rel, char *out,
                            size_t cap) {
    out[0] = '\0';
    static const char scheme[] = "mlflow-artifacts:";
    if (strncmp(artifact_uri, scheme, sizeof scheme - 1) != 0)
        return kl_seterr(KL_EUNSUPPORTED,
                         "artifact location \"%s\": kiln moves artifacts through the tracking "
                         "server's proxy (mlflow-artifacts:/...); start `mlflow server` with "
                         "artifact serving on (the default) and no --default-artifact-root",
                         artifact_uri);
    const char *p = artifact_uri + sizeof scheme - 1;
    if (!strncmp(p, "//", 2) && p[2] != '/') { /* mlflow-artifacts://host:port/path */
        const char *host = p + 2;
        size_t hlen = strcspn(host, "/");
        if (hlen != strlen(c->authority) || strncmp(host, c->authority, hlen) != 0)
            return kl_seterr(KL_EUNSUPPORTED,
                             "artifact location \"%s\" names another server than %s", artifact_uri,
                             c->uri);
        p = host + hlen;
    }
    if (unsafe(rel)) return kl_seterr(KL_EINVAL, "artifact path \"%s\" leaves its root", rel);
    if (join(out, cap, p) || (rel && join(out, cap, rel)))
        return kl_seterr(KL_EINVAL, "artifact path too long");
    return KL_OK;
}

/* The request path for a proxied artifact: PROXY/<percent-encoded path>. */
static kl_status file_url(kl_mlflow *c, const char *artifact_uri, const char *rel, char *url,
                          size_t cap) {
    char p[PATH_CAP];
    KL_TRY(proxy_path(c, artifact_uri, rel, p, sizeof p));
    snprintf(url, cap, "%s/", PROXY);
    if (kl_http_escape(url, cap, p, 1)) return kl_seterr(KL_EINVAL, "artifact path too long");
    return KL_OK;
}

kl_status kl_mlflow_upload_file(kl_mlflow *c, const char *artifact_uri, const char *local_path,
                                const char *artifact_path) {
    char url[3 * PATH_CAP];
    kl_status s = file_url(c, artifact_uri, artifact_path, url, sizeof url);
    if (!s) s = kl_http_upload(c->http, url, local_path);
    if (s)
        return kl_preferr(s, "upload \"%s\" to %s/%s", local_path, artifact_uri,
                          artifact_path ? artifact_path : "");
    return KL_OK;
}

/* Uploads the regular files under local (sorted, recursively) to artifact_uri/rel. */
static kl_status upload_tree(kl_mlflow *c, const char *artifact_uri, const char *local,
                             const char *rel) {
    struct dirent **names = NULL;
    int n = scandir(local, &names, NULL, alphasort);
    if (n < 0) return kl_seterr(KL_EIO, "cannot list \"%s\": %s", local, strerror(errno));
    kl_status s = KL_OK;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (s || !strcmp(name, ".") || !strcmp(name, "..")) continue;
        char child[PATH_CAP], crel[PATH_CAP] = "";
        struct stat st;
        if (snprintf(child, sizeof child, "%s/%s", local, name) >= (int)sizeof child ||
            join(crel, sizeof crel, rel) || join(crel, sizeof crel, name)) {
            s = kl_seterr(KL_EINVAL, "path too long under \"%s\"", local);
        } else if (stat(child, &st) != 0) {
            s = kl_seterr(KL_EIO, "cannot stat \"%s\": %s", child, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            s = upload_tree(c, artifact_uri, child, crel);
        } else if (S_ISREG(st.st_mode)) {
            s = kl_mlflow_upload_file(c, artifact_uri, child, crel);
        } /* sockets, fifos and devices are not artifacts */
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return s;
}

kl_status kl_mlflow_upload_dir(kl_mlflow *c, const char *artifact_uri, const char *local_dir,
                               const char *artifact_dir) {
    struct stat st;
    if (stat(local_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return kl_seterr(KL_ENOTFOUND, "upload: \"%s\" is not a directory", local_dir);
    return upload_tree(c, artifact_uri, local_dir, artifact_dir ? artifact_dir : "");
}

/* ---- listing and downloading ------------------------------------------------------------- */

void kl_mlflow_files_free(kl_mlflow_file *files, int n) {
    for (int i = 0; files && i < n; i++)
        free(files[i].path);
    free(files);
}

/* Resolves runs:/<run_id>[/path] and models:/... to the artifact location they stand for. */
static kl_status resolve(kl_mlflow *c, const char *uri, char *out, size_t cap) {
    if (!strncmp(uri, "runs:/", 6)) {
        const char *p = uri + 6;
        while (*p == '/')
            p++;
        size_t idlen = strcspn(p, "/");
        char id[64];
        if (idlen == 0 || idlen >= sizeof id)
            return kl_seterr(KL_EINVAL, "\"%s\": expected runs:/<run_id>/<path>", uri);
        memcpy(id, p, idlen);
        id[idlen] = '\0';
        kl_mlflow_run_info r;
        KL_TRY(kl_mlflow_get_run(c, id, &r));
        snprintf(out, cap, "%s", r.artifact_uri);
        kl_mlflow_run_info_free(&r);
        if (join(out, cap, p + idlen)) return kl_seterr(KL_EINVAL, "\"%s\": too long", uri);
        return KL_OK;
    }
    if (!strncmp(uri, "models:/", 8)) {
        char loc[512];
        KL_TRY(kl_mlflow_models_uri(c, uri, loc, NULL));
        snprintf(out, cap, "%s", loc);
        return KL_OK;
    }
    if ((size_t)snprintf(out, cap, "%s", uri) >= cap)
        return kl_seterr(KL_EINVAL, "artifact URI too long");
    return KL_OK;
}

kl_status kl_mlflow_list_artifacts(kl_mlflow *c, const char *artifact_uri,
                                   const char *artifact_path, kl_mlflow_file **files, int *n) {
    *files = NULL;
    *n = 0;
    char root[1024], p[PATH_CAP], url[3 * PATH_CAP];
    KL_TRY(resolve(c, artifact_uri, root, sizeof root));
    KL_TRY(proxy_path(c, root, artifact_path, p, sizeof p));
    snprintf(url, sizeof url, "%s?path=", PROXY);
    if (kl_http_escape(url, sizeof url, p, 0))
        return kl_seterr(KL_EINVAL, "artifact path too long");
    cJSON *r;
    kl_status s = kl_mlflow_rpc(c, "GET", url, NULL, 0, &r);
    if (s) return kl_preferr(s, "list artifacts %s/%s", root, artifact_path ? artifact_path : "");
    const cJSON *arr = cJSON_GetObjectItem(r, "files");
    int count = cJSON_GetArraySize(arr);
    kl_mlflow_file *f = calloc((size_t)(count ? count : 1), sizeof *f);
    if (!f) {
        cJSON_Delete(r);
        return kl_seterr(KL_ENOMEM, "listing artifacts");
    }
    const cJSON *e;
    int k = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(e, "path"));
        if (!path) continue;
        const char *base = strrchr(path, '/'); /* the proxy answers basenames; be lenient */
        f[k].path = strdup(base ? base + 1 : path);
        f[k].is_dir = cJSON_IsTrue(cJSON_GetObjectItem(e, "is_dir"));
        f[k].size = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "file_size"));
        if (f[k].size < 0 || f[k].is_dir) f[k].size = 0;
        if (!f[k].path) {
            kl_mlflow_files_free(f, k);
            cJSON_Delete(r);
            return kl_seterr(KL_ENOMEM, "listing artifacts");
        }
        k++;
    }
    cJSON_Delete(r);
    *files = f;
    *n = k;
    return KL_OK;
}

static kl_status mkparent(const char *path) {
    char dir[PATH_CAP];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return KL_OK;
    *slash = '\0';
    return kl_file_mkdirs(dir);
}

static kl_status download_tree(kl_mlflow *c, const char *root, const char *rel, const char *local,
                               int depth) {
    if (depth > 64) return kl_seterr(KL_EFORMAT, "artifact tree deeper than 64 levels");
    kl_mlflow_file *files;
    int n;
    KL_TRY(kl_mlflow_list_artifacts(c, root, rel, &files, &n));
    kl_status s = KL_OK;
    if (n == 0) { /* a file (or nothing: the GET says which) */
        char url[3 * PATH_CAP];
        s = file_url(c, root, rel, url, sizeof url);
        if (!s) s = mkparent(local);
        if (!s) s = kl_http_download(c->http, url, local);
        if (s) s = kl_preferr(s, "download %s/%s", root, rel);
    } else {
        s = kl_file_mkdirs(local);
    }
    for (int i = 0; i < n && !s; i++) {
        const char *name = files[i].path;
        if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
            s = kl_seterr(KL_EFORMAT, "artifact listing holds the name \"%s\"", name);
            break;
        }
        char crel[PATH_CAP] = "", clocal[PATH_CAP];
        if (join(crel, sizeof crel, rel) || join(crel, sizeof crel, name) ||
            snprintf(clocal, sizeof clocal, "%s/%s", local, name) >= (int)sizeof clocal) {
            s = kl_seterr(KL_EINVAL, "path too long under \"%s\"", local);
            break;
        }
        s = download_tree(c, root, crel, clocal, depth + 1);
    }
    kl_mlflow_files_free(files, n);
    return s;
}

kl_status kl_mlflow_download(kl_mlflow *c, const char *artifact_uri, const char *artifact_path,
                             const char *local_path) {
    char root[1024];
    KL_TRY(resolve(c, artifact_uri, root, sizeof root));
    return download_tree(c, root, artifact_path ? artifact_path : "", local_path, 0);
}
