/* http.c — libcurl requests with timeouts, retries, auth, TLS, streaming, MLflow error bodies. */
#include "tracking/http.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BODY_CAP ((size_t)512 << 20)   /* largest JSON answer kept in memory */
#define ERRBODY_CAP ((size_t)64 << 10) /* an error answer is cut here */
#define MSG_CAP 600                    /* longest server message quoted in an error */
#define RETRY_AFTER_MAX_S 600.0        /* a longer Retry-After is capped: never block forever */

struct kl_http {
    CURL *curl;                     /* the one easy handle; its connection cache is reused */
    char *base;                     /* base URI, owned */
    char *username;                 /* basic auth user, owned, or NULL */
    char *password;                 /* basic auth password, owned, or NULL */
    char *bearer;                   /* "Authorization: Bearer ..." header, owned, or NULL */
    char *ca_path;                  /* CA bundle, owned, or NULL */
    char *client_cert;              /* client certificate, owned, or NULL */
    int insecure;                   /* skip certificate verification */
    double timeout_s;               /* per request */
    int max_retries;                /* retries after the first try */
    double backoff_base_s;          /* first backoff */
    double backoff_max_s;           /* cap on one computed backoff */
    uint64_t rng;                   /* xorshift state for the jitter */
    int status;                     /* HTTP status of the last try, 0 if none */
    char error_code[64];            /* MLflow error_code of the last answer */
    char peer[32];                  /* what the server is, in messages ("MLflow") */
    double retry_after_s;           /* Retry-After of the last answer, -1 if none */
    char curl_err[CURL_ERROR_SIZE]; /* libcurl's detail for the last transport error */
};

/* A growable byte buffer with a cap. */
typedef struct {
    char *p;      /* bytes, NUL-terminated when len > 0 */
    size_t len;   /* bytes used */
    size_t cap;   /* bytes allocated */
    size_t limit; /* most bytes kept; the rest is dropped */
    int overflow; /* 1 when bytes were dropped */
} buf_t;

/* Where an answer's body goes: the file for a 2xx download, else the buffer. */
typedef struct {
    CURL *curl;   /* to read the status once the body starts */
    FILE *file;   /* download target, or NULL */
    int to_file;  /* -1 undecided, 0 buffer, 1 file */
    buf_t body;   /* answer text (JSON calls, error answers) */
    int write_io; /* 1 when writing the file failed */
} sink_t;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s) {
    return s && *s ? strdup(s) : NULL;
}

static int buf_append(buf_t *b, const char *p, size_t n) {
    if (b->len + n > b->limit) {
        b->overflow = 1;
        n = b->limit > b->len ? b->limit - b->len : 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
    sink_t *s = arg;
    size_t bytes = size * n;
    if (s->to_file < 0) {
        long code = 0;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
        s->to_file = s->file && code >= 200 && code < 300;
        if (!s->to_file && s->file) s->body.limit = ERRBODY_CAP;
    }
    if (s->to_file) {
        if (fwrite(p, 1, bytes, s->file) != bytes) {
            s->write_io = 1;
            return 0;
        }
        return bytes;
    }
    return buf_append(&s->body, p, bytes) == 0 ? bytes : 0;
}

/* Reads Retry-After (delta-seconds or an HTTP date). */
static size_t on_header(char *p, size_t size, size_t n, void *arg) {
    kl_http *h = arg;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
        char v[128];
        size_t m = len - (sizeof name - 1);
        if (m >= sizeof v) m = sizeof v - 1;
        memcpy(v, p + sizeof name - 1, m);
        v[m] = '\0';
        char *s = v;
        while (*s == ' ' || *s == '\t')
            s++;
        char *end = s + strlen(s);
        while (end > s && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            *--end = '\0';
        char *stop;
        double secs = strtod(s, &stop);
        if (stop != s && *stop == '\0' && secs >= 0) {
            h->retry_after_s = secs;
        } else {
            time_t when = curl_getdate(s, NULL); /* an HTTP date */
            double wait = when != -1 ? difftime(when, time(NULL)) : -1;
            if (when != -1) h->retry_after_s = wait > 0 ? wait : 0;
        }
    }
    return len;
}

static size_t on_read(char *p, size_t size, size_t n, void *arg) {
    FILE *f = arg;
    size_t got = fread(p, 1, size * n, f);
    if (got == 0 && ferror(f)) return CURL_READFUNC_ABORT;
    return got;
}

static int on_seek(void *arg, curl_off_t off, int origin) {
    return fseeko(arg, (off_t)off, origin) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

kl_status kl_http_open(const kl_http_opts *o, kl_http **out) {
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return kl_seterr(KL_EINTERNAL, "libcurl: %s", curl_easy_strerror(curl_init_rc));
    kl_http *h = calloc(1, sizeof *h);
    if (!h) return kl_seterr(KL_ENOMEM, "allocating an HTTP client");
    h->curl = curl_easy_init();
    h->base = strdup(o->base ? o->base : "");
    snprintf(h->peer, sizeof h->peer, "%s", o->peer ? o->peer : "MLflow");
    h->username = o->username && o->password ? dup_or_null(o->username) : NULL;
    h->password = o->username && o->password ? strdup(o->password) : NULL;
    if (!h->username && o->token && *o->token) {
        size_t n = strlen(o->token) + 32;
        h->bearer = malloc(n);
        if (h->bearer) snprintf(h->bearer, n, "Authorization: Bearer %s", o->token);
    }
    h->ca_path = dup_or_null(o->ca_path);
    h->client_cert = dup_or_null(o->client_cert);
    h->insecure = o->insecure;
    h->timeout_s = o->timeout_s > 0 ? o->timeout_s : 30;
    h->max_retries = o->max_retries > 0 ? o->max_retries : 0;
    h->backoff_base_s = o->backoff_base_s > 0 ? o->backoff_base_s : 0.5;
    h->backoff_max_s = o->backoff_max_s > 0 ? o->backoff_max_s : 30;
    h->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)h;
    if (!h->rng) h->rng = 88172645463325252ull;
    if (!h->curl || !h->base) {
        kl_http_close(h);
        return kl_seterr(KL_ENOMEM, "allocating an HTTP client");
    }
    *out = h;
    return KL_OK;
}

void kl_http_close(kl_http *h) {
    if (!h) return;
    if (h->curl) curl_easy_cleanup(h->curl);
    free(h->base);
    free(h->username);
    if (h->password) {
        memset(h->password, 0, strlen(h->password));
        free(h->password);
    }
    free(h->bearer);
    free(h->ca_path);
    free(h->client_cert);
    free(h);
}

int kl_http_status(const kl_http *h) {
    return h ? h->status : 0;
}

const char *kl_http_error_code(const kl_http *h) {
    return h ? h->error_code : "";
}

const char *kl_http_base(const kl_http *h) {
    return h->base;
}

int kl_http_escape(char *out, size_t cap, const char *s, int keep_slash) {
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
                    (keep_slash && ch == '/');
        size_t need = plain ? 1 : 3;
        if (len + need + 1 > cap) return -1;
        if (plain) {
            out[len++] = (char)ch;
        } else {
            out[len++] = '%';
            out[len++] = hex[ch >> 4];
            out[len++] = hex[ch & 15];
        }
    }
    out[len] = '\0';
    return 0;
}

/* ---- one try --------------------------------------------------------------------------------- */

/* Options every request carries; the handle is reset first so nothing leaks from the last one
 * (curl_easy_reset keeps the connection cache). */
static void setup_common(kl_http *h, const char *url, long stall_timeout) {
    CURL *c = h->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_err);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln-mlflow-c/" KILN_VERSION);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    long ms = (long)(h->timeout_s * 1000);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms < 10000 ? ms : 10000L);
    if (stall_timeout) {
        /* Streams may take long; one that moves nothing for timeout_s seconds is dead. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->timeout_s >= 1 ? (long)h->timeout_s : 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
    }
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    if (h->username) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, h->username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, h->password);
    }
    if (h->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (h->ca_path) curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_path);
    if (h->client_cert) curl_easy_setopt(c, CURLOPT_SSLCERT, h->client_cert);
}

static struct curl_slist *headers(kl_http *h, const char *content_type) {
    struct curl_slist *l = NULL;
    char line[128];
    if (content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", content_type);
        l = curl_slist_append(l, line);
    }
    l = curl_slist_append(l, "Accept: application/json, */*");
    l = curl_slist_append(l, "Expect:"); /* no 100-continue round trip before bodies */
    if (h->bearer) l = curl_slist_append(l, h->bearer);
    return l;
}

static int transient_status(int s) {
    return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* Did the failure happen before the server could have seen the request? */
static int before_request(CURL *c, CURLcode rc) {
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_COULDNT_RESOLVE_PROXY)
        return 1;
    long sent = 0;
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &sent);
    return sent == 0 &&
           (rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SEND_ERROR ||
            rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING);
}

/* A failure after the request left: the server may or may not have acted on it. */
static int midway(CURLcode rc) {
    return rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR ||
           rc == CURLE_SEND_ERROR || rc == CURLE_PARTIAL_FILE || rc == CURLE_SSL_CONNECT_ERROR;
}

static double rand01(kl_http *h) {
    h->rng ^= h->rng << 13;
    h->rng ^= h->rng >> 7;
    h->rng ^= h->rng << 17;
    return (double)(h->rng >> 11) / 9007199254740992.0;
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double backoff(kl_http *h, int retry) {
    double d = h->backoff_base_s * ldexp(1.0, retry);
    if (d > h->backoff_max_s) d = h->backoff_max_s;
    d *= 0.5 + rand01(h); /* +-50% jitter: clients that failed together do not retry together */
    if (h->retry_after_s >= 0) {
        double ra = h->retry_after_s < RETRY_AFTER_MAX_S ? h->retry_after_s : RETRY_AFTER_MAX_S;
        if (ra > d) d = ra;
    }
    return d;
}

/* "POST /api/2.0/mlflow/runs/log-batch" (without the query), for messages. */
static void describe(char *out, size_t cap, const char *method, const char *path) {
    size_t n = strcspn(path, "?");
    snprintf(out, cap, "%s %.*s", method, (int)(n < 400 ? n : 400), path);
}

/* The text of a non-JSON body: its first line, shortened. */
static void first_line(char *out, size_t cap, const char *body) {
    size_t n = body ? strcspn(body, "\r\n") : 0;
    if (n > MSG_CAP) n = MSG_CAP;
    snprintf(out, cap, "%.*s", (int)n, body ? body : "");
}

/* Turns a non-2xx answer into the thread's error message; returns the status kind. */
static kl_status answer_error(kl_http *h, const char *what, const char *body, int tries) {
    int s = h->status;
    kl_status kind = s == 404   ? KL_ENOTFOUND
                     : s == 501 ? KL_EUNSUPPORTED
                     : (s >= 400 && s < 500 && s != 401 && s != 403 && !transient_status(s))
                         ? KL_EINVAL
                         : KL_EIO;
    char tries_txt[32] = "";
    if (tries > 1) snprintf(tries_txt, sizeof tries_txt, "; %d tries", tries);
    if (s == 401)
        return kl_seterr(kind,
                         "MLflow 401: authentication failed for %s (check "
                         "MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN) (%s)",
                         h->base, what);
    cJSON *j = body && *body ? cJSON_Parse(body) : NULL;
    const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(j, "error_code"));
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(j, "message"));
    const char *detail = cJSON_GetStringValue(cJSON_GetObjectItem(j, "detail"));
    char text[MSG_CAP + 8];
    if (msg) {
        first_line(text, sizeof text, msg);
        if (strlen(msg) > strlen(text)) strcat(text, " ...");
    } else if (detail) {
        first_line(text, sizeof text, detail);
    } else {
        first_line(text, sizeof text, body);
    }
    if (code) snprintf(h->error_code, sizeof h->error_code, "%s", code);
    kl_status r;
    if (s == 403)
        r = kl_seterr(
            kind,
            "MLflow 403: access denied by %s: %s (check MLFLOW_TRACKING_USERNAME/PASSWORD "
            "or MLFLOW_TRACKING_TOKEN, and the user's permissions) (%s)",
            h->base, text[0] ? text : "forbidden", what);
    else
        r = kl_seterr(kind, "%s %d%s%s: %s (%s%s)", h->peer, s, code ? " " : "", code ? code : "",
                      text[0] ? text : "(no message)", what, tries_txt);
    cJSON_Delete(j);
    return r;
}

typedef enum { REQ_JSON, REQ_UPLOAD, REQ_DOWNLOAD } req_kind;

/* One request with its retries. For REQ_UPLOAD src is the open file; for REQ_DOWNLOAD dst the
 * path to write. */
static kl_status request(kl_http *h, req_kind kind, const char *method, const char *path,
                         const char *json_body, int flags, FILE *src, const char *dst,
                         char **resp) {
    if (resp) *resp = NULL;
    size_t blen = strlen(h->base), plen = strlen(path);
    char *url = malloc(blen + plen + 1);
    if (!url) return kl_seterr(KL_ENOMEM, "allocating a URL");
    memcpy(url, h->base, blen);
    memcpy(url + blen, path, plen + 1);
    char what[512];
    describe(what, sizeof what, method, path);
    char part[4200] = "";
    if (dst) snprintf(part, sizeof part, "%s.part", dst);
    if (kind == REQ_UPLOAD) flags |= KL_HTTP_IDEMPOTENT;
    if (kind == REQ_DOWNLOAD) flags |= KL_HTTP_IDEMPOTENT;
    struct curl_slist *hdr = headers(h, kind == REQ_UPLOAD ? "application/octet-stream"
                                        : json_body        ? "application/json"
                                                           : NULL);
    curl_off_t src_size = 0;
    if (src) {
        struct stat st;
        if (fstat(fileno(src), &st) == 0) src_size = (curl_off_t)st.st_size;
    }
    kl_status result = KL_EIO;
    for (int attempt = 0;; attempt++) {
        h->status = 0;
        h->error_code[0] = '\0';
        h->retry_after_s = -1;
        h->curl_err[0] = '\0';
        sink_t sink = {.curl = h->curl, .to_file = -1, .body = {.limit = BODY_CAP}};
        FILE *out = NULL;
        if (kind == REQ_DOWNLOAD) {
            out = fopen(part, "wb");
            if (!out) {
                result = kl_seterr(KL_EIO, "cannot create \"%s\": %s", part, strerror(errno));
                break;
            }
            sink.file = out;
        }
        setup_common(h, url, kind != REQ_JSON);
        curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &sink);
        if (kind == REQ_UPLOAD) {
            fseeko(src, 0, SEEK_SET);
            clearerr(src);
            curl_easy_setopt(h->curl, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(h->curl, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(h->curl, CURLOPT_READDATA, src);
            curl_easy_setopt(h->curl, CURLOPT_SEEKFUNCTION, on_seek);
            curl_easy_setopt(h->curl, CURLOPT_SEEKDATA, src);
            curl_easy_setopt(h->curl, CURLOPT_INFILESIZE_LARGE, src_size);
        } else if (!strcmp(method, "GET")) {
            curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
        } else {
            if (strcmp(method, "POST") != 0)
                curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
            else
                curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
            curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, json_body ? json_body : "");
            curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(json_body ? strlen(json_body) : 0));
        }
        CURLcode rc = curl_easy_perform(h->curl);
        long code = 0;
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &code);
        int io_fail = out && (fclose(out) != 0 || sink.write_io);
        int retry = 0;
        if (rc == CURLE_OK && code >= 200 && code < 300 && !sink.body.overflow && !io_fail) {
            h->status = (int)code;
            if (kind == REQ_DOWNLOAD && rename(part, dst) != 0) {
                result = kl_seterr(KL_EIO, "cannot rename \"%s\": %s", part, strerror(errno));
            } else {
                result = KL_OK;
                if (resp) {
                    *resp = sink.body.p ? sink.body.p : strdup("");
                    sink.body.p = NULL;
                    if (!*resp) result = kl_seterr(KL_ENOMEM, "allocating an answer");
                }
            }
        } else if (io_fail) {
            result = kl_seterr(KL_EIO, "writing \"%s\" failed", part);
        } else if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && code >= 300)) {
            h->status = (int)code;
            if (sink.body.overflow && code >= 200 && code < 300)
                result =
                    kl_seterr(KL_EIO, "answer larger than %zu bytes (%s)", (size_t)BODY_CAP, what);
            else
                result = answer_error(h, what, sink.body.p, attempt + 1);
            retry = transient_status((int)code);
        } else if (rc == CURLE_READ_ERROR || rc == CURLE_ABORTED_BY_CALLBACK) {
            result = kl_seterr(KL_EIO, "reading the upload failed (%s)", what);
        } else {
            retry = before_request(h->curl, rc) || ((flags & KL_HTTP_IDEMPOTENT) && midway(rc));
            result = kl_seterr(KL_EIO, "cannot reach %s at %s: %s (%s; %d %s)", h->peer, h->base,
                               h->curl_err[0] ? h->curl_err : curl_easy_strerror(rc), what,
                               attempt + 1, attempt ? "tries" : "try");
        }
        free(sink.body.p);
        if (result != KL_OK && kind == REQ_DOWNLOAD) unlink(part);
        if (result == KL_OK || !retry || attempt >= h->max_retries) break;
        sleep_s(backoff(h, attempt));
    }
    curl_slist_free_all(hdr);
    free(url);
    return result;
}

kl_status kl_http_call(kl_http *h, const char *method, const char *path, const char *json_body,
                       int flags, char **resp) {
    if (!strcmp(method, "GET")) flags |= KL_HTTP_IDEMPOTENT;
    return request(h, REQ_JSON, method, path, json_body, flags, NULL, NULL, resp);
}

kl_status kl_http_upload(kl_http *h, const char *path, const char *local_file) {
    FILE *f = fopen(local_file, "rb");
    if (!f) return kl_seterr(KL_EIO, "cannot open \"%s\": %s", local_file, strerror(errno));
    kl_status s = request(h, REQ_UPLOAD, "PUT", path, NULL, 0, f, NULL, NULL);
    fclose(f);
    return s;
}

kl_status kl_http_download(kl_http *h, const char *path, const char *local_file) {
    return request(h, REQ_DOWNLOAD, "GET", path, NULL, 0, NULL, local_file, NULL);
}
