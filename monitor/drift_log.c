/* drift_log.c — the prediction log's JSONL, read line by line into rows for a drift report. */
#include "monitor/drift_log.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void kl_drift_log_free(kl_drift_log *log) {
    if (!log) return;
    free(log->x);
    free(log->out);
    memset(log, 0, sizeof *log);
}

/* Makes room for `more` rows. */
static kl_status reserve(kl_drift_log *log, int64_t *cap, int64_t more) {
    if (log->rows + more <= *cap) return KL_OK;
    int64_t want = *cap ? *cap : 256;
    while (want < log->rows + more)
        want *= 2;
    float *x = realloc(log->x, (size_t)want * log->d * sizeof(float));
    if (x) log->x = x;
    float *o = x ? realloc(log->out, (size_t)want * log->n_out * sizeof(float)) : NULL;
    if (o) log->out = o;
    if (!x || !o) return kl_seterr(KL_ENOMEM, "%lld logged rows", (long long)want);
    *cap = want;
    return KL_OK;
}

/* Reads a rows x width array of numbers (null: NaN) into dst; a message in why on failure. */
static int read_matrix(const cJSON *a, const char *what, int width, float *dst, char *why,
                       size_t cap) {
    int64_t r = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, a) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != width) {
            snprintf(why, cap, "%s[%lld]: expected an array of %d numbers", what, (long long)r,
                     width);
            return 0;
        }
        int c = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, row) {
            if (cJSON_IsNumber(v))
                dst[r * width + c] = (float)v->valuedouble;
            else if (cJSON_IsNull(v))
                dst[r * width + c] = NAN;
            else {
                snprintf(why, cap, "%s[%lld][%d]: not a number", what, (long long)r, c);
                return 0;
            }
            c++;
        }
        r++;
    }
    return 1;
}

/* One line: 1 used, 0 skipped with why set, -1 an allocation failure (status set). */
static int parse_line(kl_drift_log *log, int64_t *cap, const char *model, const char *text,
                      char *why, size_t cap_why) {
    cJSON *j = cJSON_Parse(text);
    if (!j || !cJSON_IsObject(j)) {
        snprintf(why, cap_why, "not a JSON object");
        cJSON_Delete(j);
        return 0;
    }
    int rc = 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type"),
                *name = cJSON_GetObjectItemCaseSensitive(j, "model"),
                *in = cJSON_GetObjectItemCaseSensitive(j, "inputs"),
                *out = cJSON_GetObjectItemCaseSensitive(j, "outputs");
    if (!cJSON_IsString(type)) {
        snprintf(why, cap_why, "\"type\": missing or not a string");
    } else if (!strcmp(type->valuestring, "feedback")) {
        log->feedback++;
        rc = 1;
    } else if (strcmp(type->valuestring, "prediction")) {
        snprintf(why, cap_why, "\"type\": \"%.40s\" is neither prediction nor feedback",
                 type->valuestring);
    } else if (model && (!cJSON_IsString(name) || strcmp(name->valuestring, model))) {
        log->other_model++;
        rc = 1;
    } else if (!cJSON_IsArray(in) || !cJSON_IsArray(out)) {
        snprintf(why, cap_why, "\"inputs\" and \"outputs\": expected arrays of rows");
    } else if (cJSON_GetArraySize(in) != cJSON_GetArraySize(out)) {
        snprintf(why, cap_why, "%d input rows but %d output rows", cJSON_GetArraySize(in),
                 cJSON_GetArraySize(out));
    } else {
        int64_t n = cJSON_GetArraySize(in);
        if (reserve(log, cap, n)) {
            rc = -1;
        } else if (read_matrix(in, "inputs", log->d, log->x + log->rows * log->d, why, cap_why) &&
                   read_matrix(out, "outputs", log->n_out, log->out + log->rows * log->n_out, why,
                               cap_why)) {
            log->rows += n;
            log->records++;
            rc = 1;
        }
    }
    cJSON_Delete(j);
    return rc;
}

/* Appends the records of one file; line numbers in messages are the file's own. */
static kl_status read_file(const char *path, const char *model, FILE *warn, int max_warn,
                           kl_drift_log *out, int64_t *cap) {
    FILE *f = fopen(path, "r");
    if (!f)
        return kl_seterr(errno == ENOENT ? KL_ENOTFOUND : KL_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL, why[160];
    size_t len = 0;
    int64_t n = 0;
    kl_status s = KL_OK;
    while (getline(&line, &len, f) >= 0) {
        n++;
        out->lines++;
        size_t i = 0;
        while (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')
            i++;
        if (!line[i]) continue;
        int rc = parse_line(out, cap, model, line, why, sizeof why);
        if (rc < 0) {
            s = kl_preferr(KL_ENOMEM, "%s:%lld", path, (long long)n);
            break;
        }
        if (rc == 0) {
            if (warn && out->skipped < max_warn)
                fprintf(warn, "%s:%lld: %s (line skipped)\n", path, (long long)n, why);
            out->skipped++;
        }
    }
    if (!s && ferror(f))
        s = kl_seterr(KL_EIO, "%s: read error after line %lld", path, (long long)n);
    free(line);
    fclose(f);
    return s;
}

/* The rotated files of a prediction log directory, oldest first (their numbers grow). */
static int log_file(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return !strncmp(e->d_name, "predictions-", 12) && n > 18 &&
           !strcmp(e->d_name + n - 6, ".jsonl");
}

kl_status kl_drift_log_read(const char *path, int d, int n_out, const char *model, FILE *warn,
                            int max_warn, kl_drift_log *out) {
    memset(out, 0, sizeof *out);
    if (d < 1 || n_out < 1) return kl_seterr(KL_EINVAL, "prediction log: %d features", d);
    out->d = d;
    out->n_out = n_out;
    int64_t cap = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return kl_seterr(errno == ENOENT ? KL_ENOTFOUND : KL_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        kl_status s = read_file(path, model, warn, max_warn, out, &cap);
        if (s) kl_drift_log_free(out);
        return s;
    }
    struct dirent **names = NULL;
    int n = scandir(path, &names, log_file, alphasort);
    if (n < 0) return kl_seterr(KL_EIO, "%s: %s", path, strerror(errno));
    kl_status s = n ? KL_OK
                    : kl_seterr(KL_ENOTFOUND,
                                "%s: a directory without predictions-NNNNNN.jsonl files (kiln "
                                "serve --prediction-log DIR writes them)",
                                path);
    for (int i = 0; i < n; i++) {
        char file[4352];
        snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
        if (!s) s = read_file(file, model, warn, max_warn, out, &cap);
        free(names[i]);
    }
    free(names);
    if (s) kl_drift_log_free(out);
    return s;
}
