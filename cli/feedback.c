/* feedback.c — `kiln feedback FILE --url http://HOST:PORT [--model NAME]`: sends ground-truth
 * labels by request id to a running `kiln serve` (its HTTP port), which joins them with the
 * predictions it logged (monitor/prediction_log.h) for live accuracy. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h> /* the lines of a JSONL file and the request and answer bodies */

#include "cli/cli.h"
#include "tracking/http.h" /* kl_http_call: POST with retries and time limits */

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln feedback FILE --url http://HOST:PORT [--model NAME] [--batch 500]\n"
            "\n"
            "Sends true labels for requests a `kiln serve --prediction-log ...` answered, by\n"
            "request id, to its HTTP port (POST /v2/models/NAME/feedback, or /v2/feedback\n"
            "without --model: the server knows each request's model). FILE is either\n"
            "  CSV:   request_id,label[,label...]   one label per row of that request (a header\n"
            "         line whose second field is not a number is skipped), or\n"
            "  JSONL: {\"request_id\":\"r1\",\"labels\":[3,7]} per line (or \"label\":3).\n"
            "Prints how many were accepted, unknown to the server (not among its recent\n"
            "predictions), rejected by it (wrong number of labels, labelled already) and\n"
            "malformed here (not sent; the first few are named on stderr). Exit 0 when every\n"
            "batch was delivered, 1 otherwise, 2 on a usage error.\n");
}

/* Parses one line into a feedback object (the caller's), or NULL with why in msg. */
static cJSON *parse_line(char *line, char *msg, size_t size, int *header) {
    *header = 0;
    msg[0] = '\0';
    char *s = line;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    if (!*s) return NULL;
    if (*s == '{') {
        cJSON *o = cJSON_Parse(s);
        const cJSON *id = o ? cJSON_GetObjectItemCaseSensitive(o, "request_id") : NULL;
        const cJSON *ls = o ? cJSON_GetObjectItemCaseSensitive(o, "labels") : NULL;
        const cJSON *l1 = o ? cJSON_GetObjectItemCaseSensitive(o, "label") : NULL;
        if (!o || !cJSON_IsString(id) || !*id->valuestring) {
            snprintf(msg, size, "%s", o ? "no string \"request_id\"" : "not a JSON object");
            cJSON_Delete(o);
            return NULL;
        }
        int ok = (ls != NULL) != (l1 != NULL);
        if (ok && ls) {
            ok = cJSON_IsArray(ls) && cJSON_GetArraySize(ls) > 0;
            for (const cJSON *x = ok ? ls->child : NULL; x; x = x->next)
                ok = ok && cJSON_IsNumber(x) && x->valuedouble >= 0 &&
                     x->valuedouble == (double)(long long)x->valuedouble;
        } else if (ok) {
            ok = cJSON_IsNumber(l1) && l1->valuedouble >= 0 &&
                 l1->valuedouble == (double)(long long)l1->valuedouble;
        }
        if (!ok) {
            snprintf(msg, size, "\"labels\" must be a non-empty array of integers >= 0");
            cJSON_Delete(o);
            return NULL;
        }
        return o;
    }
    /* CSV: request_id,label[,label...] */
    char *comma = strchr(s, ',');
    if (!comma || comma == s) {
        snprintf(msg, size, "expected request_id,label[,label...]");
        return NULL;
    }
    *comma = '\0';
    cJSON *o = cJSON_CreateObject();
    cJSON *labels = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "request_id", s);
    cJSON_AddItemToObject(o, "labels", labels);
    for (char *c = comma + 1;;) {
        while (*c == ' ')
            c++;
        char *end;
        errno = 0;
        long long v = strtoll(c, &end, 10);
        while (*end == ' ')
            end++;
        if (end == c || errno || v < 0 || (*end && *end != ',')) {
            *header = cJSON_GetArraySize(labels) == 0;
            snprintf(msg, size, "label \"%.32s\" is not a class number (an integer >= 0)", c);
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddItemToArray(labels, cJSON_CreateNumber((double)v));
        if (!*end) break;
        c = end + 1;
    }
    return o;
}

typedef struct {
    long long accepted, rows, unknown, rejected; /* the server's counts, summed */
} totals;

/* POSTs one batch (a JSON array) and adds the server's counts. */
static kl_status send_batch(kl_http *h, const char *path, cJSON *batch, totals *t) {
    char *body = cJSON_PrintUnformatted(batch);
    if (!body) return kl_seterr(KL_ENOMEM, "feedback: out of memory");
    char *resp = NULL;
    kl_status st = kl_http_call(h, "POST", path, body, 0, &resp);
    free(body);
    if (st != KL_OK) return kl_preferr(st, "POST %s", path);
    cJSON *a = cJSON_Parse(resp ? resp : "");
    free(resp);
    if (!cJSON_IsObject(a)) {
        cJSON_Delete(a);
        return kl_seterr(KL_EFORMAT, "POST %s: the answer is not a JSON object", path);
    }
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(a, "accepted")))
        t->accepted += (long long)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(a, "rows"))) t->rows += (long long)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(a, "unknown")))
        t->unknown += (long long)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(a, "rejected")))
        t->rejected += (long long)x->valuedouble;
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(a, "errors");
    int shown = 0;
    for (const cJSON *e = cJSON_IsArray(errs) ? errs->child : NULL; e && shown < 3; e = e->next)
        if (cJSON_IsString(e))
            fprintf(stderr, "kiln feedback: rejected: %s\n", e->valuestring), shown++;
    cJSON_Delete(a);
    return KL_OK;
}

int kl_cmd_feedback(int argc, char **argv) {
    const char *file = NULL, *url = NULL, *model = NULL;
    long batch_size = 500;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--url") && v) {
            url = v;
            i++;
        } else if (!strcmp(a, "--model") && v) {
            model = v;
            i++;
        } else if (!strcmp(a, "--batch") && v) {
            batch_size = strtol(v, NULL, 10);
            i++;
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            fprintf(stderr, "kiln feedback: bad, incomplete or unknown option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!file || !url || batch_size < 1) {
        fprintf(stderr, "kiln feedback: give FILE and --url http://HOST:PORT (--batch >= 1)\n\n");
        usage(stderr);
        return 2;
    }
    char base[1024];
    snprintf(base, sizeof base, "%s%s", strstr(url, "://") ? "" : "http://", url);
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        base[--bl] = '\0';
    char path[600];
    if (model) {
        char esc[512] = ""; /* kl_http_escape appends */
        if (kl_http_escape(esc, sizeof esc, model, 0) != 0) {
            fprintf(stderr, "kiln feedback: model name too long\n");
            return 2;
        }
        snprintf(path, sizeof path, "/v2/models/%s/feedback", esc);
    } else {
        snprintf(path, sizeof path, "/v2/feedback");
    }
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "kiln feedback: %s: %s\n", file, strerror(errno));
        return 1;
    }
    kl_http_opts ho = {.base = base,
                       .timeout_s = 30,
                       .max_retries = 2,
                       .backoff_base_s = 0.5,
                       .backoff_max_s = 5,
                       .peer = "the kiln server"};
    kl_http *h = NULL;
    if (kl_http_open(&ho, &h) != KL_OK) {
        fclose(f);
        return kl_cli_fail("feedback");
    }
    totals t = {0};
    long long malformed = 0, line_no = 0;
    cJSON *batch = cJSON_CreateArray();
    kl_status st = KL_OK;
    char *line = NULL;
    size_t cap = 0;
    while (st == KL_OK && getline(&line, &cap, f) >= 0) {
        line_no++;
        char msg[256];
        int header = 0;
        cJSON *o = parse_line(line, msg, sizeof msg, &header);
        if (!o) {
            if (header && line_no == 1) continue; /* a CSV header */
            if (!*msg) continue;                  /* a blank line */
            if (malformed++ < 5)
                fprintf(stderr, "kiln feedback: %s:%lld: %s\n", file, line_no, msg);
            msg[0] = '\0';
            continue;
        }
        cJSON_AddItemToArray(batch, o);
        if (cJSON_GetArraySize(batch) >= batch_size) {
            st = send_batch(h, path, batch, &t);
            cJSON_Delete(batch);
            batch = cJSON_CreateArray();
        }
    }
    if (st == KL_OK && cJSON_GetArraySize(batch) > 0) st = send_batch(h, path, batch, &t);
    cJSON_Delete(batch);
    free(line);
    fclose(f);
    kl_http_close(h);
    printf("feedback: %lld accepted (%lld rows), %lld unknown, %lld rejected, %lld malformed\n",
           t.accepted, t.rows, t.unknown, t.rejected, malformed);
    if (st != KL_OK) return kl_cli_fail("feedback");
    return 0;
}
