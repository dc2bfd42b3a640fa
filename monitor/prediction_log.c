/* prediction_log.c — the prediction log's queue, sampling, writer thread and rotating JSONL
 * files (see prediction_log.h; SQL sinks in prediction_log_db.c, the join in feedback.c). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/prediction_sink.h" /* kl_db_target_parse: the database target syntax */
#include "monitor/prediction_log_impl.h"
#include "serving/model_manager.h" /* kl_request_id_hash: the canary split's hash */

#define PL_SQL_BATCH 512       /* records per transaction at most */
#define PL_WRITER_PERIOD_MS 50 /* the writer drains the queue at least this often */

kl_prediction_log_opts kl_prediction_log_defaults(void) {
    kl_prediction_log_opts o;
    memset(&o, 0, sizeof o);
    o.sample = 1;
    o.queue_bytes = (size_t)64 << 20;
    o.max_file_bytes = (uint64_t)64 << 20;
    o.max_files = 10;
    o.join_rows = 100000;
    o.accuracy_window = 1000;
    return o;
}

/* --- text ----------------------------------------------------------------------------------- */

void pl_json_string(kl_strbuf *b, const char *s) {
    kl_strbuf_add(b, "\"");
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        kl_strbuf_addn(b, run, (size_t)(s - run));
        if (c == '"' || c == '\\')
            kl_strbuf_addf(b, "\\%c", c);
        else if (c == '\n')
            kl_strbuf_add(b, "\\n");
        else
            kl_strbuf_addf(b, "\\u%04x", c);
        run = s + 1;
    }
    kl_strbuf_addn(b, run, (size_t)(s - run));
    kl_strbuf_add(b, "\"");
}

/* Floats as kl_format_float9 (9 significant digits: a float32 read back is the same value);
 * null for NaN and infinities, which JSON cannot write. Written straight into reserved room, a row
 * at a time: the log formats every input of every request, and appending value by value cost as
 * much as formatting them. */
void pl_json_matrix(kl_strbuf *b, const float *x, int64_t rows, int64_t cols) {
    kl_strbuf_add(b, "[");
    for (int64_t r = 0; r < rows; r++) {
        char *o = kl_strbuf_reserve(b, (size_t)cols * 25 + 4), *start = o;
        if (!o) return;
        if (r) *o++ = ',';
        *o++ = '[';
        for (int64_t c = 0; c < cols; c++) {
            if (c) *o++ = ',';
            float v = x[r * cols + c];
            if (isfinite(v)) {
                o += kl_format_float9(o, v);
            } else {
                memcpy(o, "null", 4);
                o += 4;
            }
        }
        *o++ = ']';
        kl_strbuf_commit(b, (size_t)(o - start));
    }
    kl_strbuf_add(b, "]");
}

void pl_json_labels(kl_strbuf *b, const int64_t *l, int64_t n) {
    kl_strbuf_add(b, "[");
    for (int64_t i = 0; i < n; i++)
        kl_strbuf_addf(b, "%s%lld", i ? "," : "", (long long)l[i]);
    kl_strbuf_add(b, "]");
}

void pl_time_text(int64_t ms, char out[32]) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", date, (int)(ms % 1000));
}

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* --- the queue ------------------------------------------------------------------------------ */

/* A record in the ring: this header, then the id, model and version strings (NUL-terminated),
 * padding to 8 bytes, then inputs and outputs (FP32) or labels (INT64). */
typedef struct {
    uint32_t size;      /* bytes of the whole record, a multiple of 8 */
    int32_t type;       /* PL_PREDICTION or PL_FEEDBACK */
    int32_t model_slot; /* counters */
    uint16_t id_len, model_len, version_len, pad;
    int64_t time_ms, rows, n_features, n_outputs;
} rec_hdr;

static size_t pad8(size_t n) {
    return (n + 7) & ~(size_t)7;
}

/* Copies n bytes into the ring at the tail (room checked by the caller). */
static void ring_put(kl_prediction_log *l, size_t *tail, const void *src, size_t n) {
    size_t first = l->cap - *tail < n ? l->cap - *tail : n;
    memcpy(l->ring + *tail, src, first);
    memcpy(l->ring, (const unsigned char *)src + first, n - first);
    *tail = (*tail + n) % l->cap;
}

static void ring_get(const kl_prediction_log *l, size_t from, void *dst, size_t n) {
    size_t first = l->cap - from < n ? l->cap - from : n;
    memcpy(dst, l->ring + from, first);
    memcpy((unsigned char *)dst + first, l->ring, n - first);
}

int pl_model_slot(kl_prediction_log *l, const char *model) {
    for (int i = 0; i < l->n_models; i++)
        if (!strcmp(l->models[i].name, model)) return i;
    if (l->n_models == PL_MAX_MODELS) return PL_MAX_MODELS - 1;
    pl_model *m = &l->models[l->n_models];
    snprintf(m->name, sizeof m->name, "%s", model);
    const char *names[] = {"model"};
    const char *values[] = {m->name};
    m->records = kl_metrics_counter(l->metrics, "kiln_prediction_log_records_total",
                                    "Records (predictions and feedback) the prediction log wrote",
                                    names, values, 1);
    m->dropped = kl_metrics_counter(l->metrics, "kiln_prediction_log_dropped_total",
                                    "Records the prediction log dropped because its queue was "
                                    "full (the requests were answered all the same)",
                                    names, values, 1);
    return l->n_models++;
}

/* Copies one record into the ring, or drops it. Request path: no I/O, no allocation. */
static void enqueue(kl_prediction_log *l, int type, const char *id, const char *model,
                    const char *version, int64_t rows, const float *in, int64_t n_features,
                    const float *out, int64_t n_outputs, const int64_t *labels) {
    size_t il = strlen(id), ml = strlen(model), vl = strlen(version);
    if (il > 65535) il = 65535;
    if (ml > 65535) ml = 65535;
    if (vl > 65535) vl = 65535;
    size_t strs = pad8(il + ml + vl + 3);
    size_t data = type == PL_PREDICTION
                      ? (size_t)rows * (size_t)(n_features + n_outputs) * sizeof(float)
                      : (size_t)rows * sizeof(int64_t);
    size_t size = sizeof(rec_hdr) + strs + pad8(data);
    rec_hdr h = {(uint32_t)size, type, 0,          (uint16_t)il, (uint16_t)ml, (uint16_t)vl, 0,
                 now_ms(),       rows, n_features, n_outputs};
    pthread_mutex_lock(&l->mu);
    int slot = pl_model_slot(l, model);
    h.model_slot = slot;
    if (l->stop || size > UINT32_MAX || l->cap - l->used < size) {
        pthread_mutex_unlock(&l->mu);
        if (l->models[slot].dropped) kl_counter_add(l->models[slot].dropped, 1);
        atomic_fetch_add(&l->dropped, 1);
        return;
    }
    size_t tail = (l->head + l->used) % l->cap;
    static const char zeros[8] = {0};
    ring_put(l, &tail, &h, sizeof h);
    ring_put(l, &tail, id, il);
    ring_put(l, &tail, zeros, 1);
    ring_put(l, &tail, model, ml);
    ring_put(l, &tail, zeros, 1);
    ring_put(l, &tail, version, vl);
    ring_put(l, &tail, zeros, 1);
    ring_put(l, &tail, zeros, strs - (il + ml + vl + 3));
    if (type == PL_PREDICTION) {
        ring_put(l, &tail, in, (size_t)rows * (size_t)n_features * sizeof(float));
        ring_put(l, &tail, out, (size_t)rows * (size_t)n_outputs * sizeof(float));
    } else {
        ring_put(l, &tail, labels, (size_t)rows * sizeof(int64_t));
    }
    ring_put(l, &tail, zeros, pad8(data) - data);
    l->used += size;
    /* The writer wakes on its own every PL_WRITER_PERIOD_MS; a wake-up per record would cost a
     * futex call here and a context switch there for every request. Only a filling queue is
     * worth waking it early. */
    if (l->writer_idle && l->used >= l->cap / 8) pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void kl_prediction_log_record(kl_prediction_log *l, const kl_prediction *p) {
    if (p->classes) pl_join_add(l, p);
    if (l->sample_all || (l->sample_cut && kl_request_id_hash(p->request_id) < l->sample_cut))
        enqueue(l, PL_PREDICTION, p->request_id, p->model, p->version, p->rows, p->inputs,
                p->n_features, p->outputs, p->n_outputs, NULL);
    else
        atomic_fetch_add(&l->sampled_out, 1);
    if (p->labels && p->classes) {
        int64_t rows;
        if (kl_prediction_log_feedback(l, p->model, p->request_id, p->labels, p->rows, &rows) !=
            KL_OK)
            kl_clearerr(); /* a request's own labels were checked by the decoder */
    }
}

void pl_enqueue_feedback(kl_prediction_log *l, const char *id, const char *model,
                         const char *version, const int64_t *labels, int64_t n) {
    enqueue(l, PL_FEEDBACK, id, model, version, n, NULL, 0, NULL, 0, labels);
}

void kl_prediction_log_counts_get(kl_prediction_log *l, kl_prediction_log_counts *out) {
    out->written = atomic_load(&l->written);
    out->dropped = atomic_load(&l->dropped);
    out->sampled_out = atomic_load(&l->sampled_out);
    out->failed = atomic_load(&l->failed);
}

/* --- JSONL files ---------------------------------------------------------------------------- */

/* The number of "predictions-NNNNNN.jsonl", or -1. */
static long long file_number(const char *name) {
    if (strncmp(name, "predictions-", 12)) return -1;
    char *end;
    long long n = strtoll(name + 12, &end, 10);
    return end != name + 12 && !strcmp(end, ".jsonl") && n >= 0 ? n : -1;
}

/* Deletes files numbered <= file_no - max_files. */
static void prune_files(kl_prediction_log *l) {
    DIR *d = opendir(l->dest);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long n = file_number(e->d_name);
        if (n >= 0 && n <= l->file_no - l->o.max_files) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", l->dest, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static kl_status open_next_file(kl_prediction_log *l) {
    if (l->f) fclose(l->f);
    l->f = NULL;
    l->file_no++;
    l->file_bytes = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/predictions-%06lld.jsonl", l->dest, l->file_no);
    l->f = fopen(path, "a");
    if (!l->f)
        return kl_seterr(KL_EIO, "prediction log: cannot open %s: %s", path, strerror(errno));
    prune_files(l);
    return KL_OK;
}

static kl_status jsonl_open(kl_prediction_log *l) {
    if (mkdir(l->dest, 0777) != 0 && errno != EEXIST)
        return kl_seterr(KL_EIO, "prediction log: cannot create directory %s: %s", l->dest,
                         strerror(errno));
    DIR *d = opendir(l->dest);
    if (!d)
        return kl_seterr(KL_EIO, "prediction log: cannot read directory %s: %s", l->dest,
                         strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        long long n = file_number(e->d_name);
        if (n > l->file_no) l->file_no = n;
    }
    closedir(d);
    return open_next_file(l);
}

/* The JSON line of a record, without the newline, into l->line. */
static void format_record(kl_prediction_log *l, const pl_record *r) {
    kl_strbuf *b = &l->line;
    b->len = 0;
    b->oom = 0;
    char t[32];
    pl_time_text(r->time_ms, t);
    kl_strbuf_addf(b, "{\"type\":\"%s\",\"time\":\"%s\",\"request_id\":",
                   r->type == PL_PREDICTION ? "prediction" : "feedback", t);
    pl_json_string(b, r->id);
    kl_strbuf_add(b, ",\"model\":");
    pl_json_string(b, r->model);
    kl_strbuf_add(b, ",\"version\":");
    pl_json_string(b, r->version);
    if (r->type == PL_PREDICTION) {
        kl_strbuf_add(b, ",\"inputs\":");
        pl_json_matrix(b, r->inputs, r->rows, r->n_features);
        kl_strbuf_add(b, ",\"outputs\":");
        pl_json_matrix(b, r->outputs, r->rows, r->n_outputs);
    } else {
        kl_strbuf_add(b, ",\"labels\":");
        pl_json_labels(b, r->labels, r->rows);
    }
    kl_strbuf_add(b, "}");
}

static kl_status jsonl_write(kl_prediction_log *l, const pl_record *r) {
    format_record(l, r);
    if (l->line.oom) return kl_seterr(KL_ENOMEM, "prediction log: out of memory formatting");
    uint64_t n = l->line.len + 1;
    if (l->f && l->file_bytes > 0 && l->file_bytes + n > l->o.max_file_bytes)
        KL_TRY(open_next_file(l));
    if (!l->f) KL_TRY(open_next_file(l));
    if (fwrite(l->line.p, 1, l->line.len, l->f) != l->line.len || fputc('\n', l->f) == EOF)
        return kl_seterr(KL_EIO, "prediction log: writing file %lld in %s: %s", l->file_no, l->dest,
                         strerror(errno));
    l->file_bytes += n;
    return KL_OK;
}

/* --- the writer ----------------------------------------------------------------------------- */

static kl_status sink_write(kl_prediction_log *l, const pl_record *r) {
    if (l->kind == PL_SINK_JSONL) return jsonl_write(l, r);
    KL_TRY(pl_db_write(l, r));
    return ++l->tx_records >= PL_SQL_BATCH ? pl_db_commit(l) : KL_OK;
}

/* Makes what was written visible: flushes the file or commits the transaction. */
static kl_status sink_flush(kl_prediction_log *l) {
    if (l->kind != PL_SINK_JSONL) return pl_db_commit(l);
    if (l->f && fflush(l->f) != 0)
        return kl_seterr(KL_EIO, "prediction log: flushing %s: %s", l->dest, strerror(errno));
    return KL_OK;
}

static void report(kl_prediction_log *l, kl_status st) {
    (void)st;
    if (!l->reported) fprintf(stderr, "kiln serve: %s (records are being lost)\n", kl_errmsg());
    l->reported = 1;
}

/* Reads the record at the head of scratch into r. */
static void parse_record(const unsigned char *p, pl_record *r) {
    rec_hdr h;
    memcpy(&h, p, sizeof h);
    const char *s = (const char *)p + sizeof h;
    r->type = h.type;
    r->model_slot = h.model_slot;
    r->time_ms = h.time_ms;
    r->id = s;
    r->model = s + h.id_len + 1;
    r->version = r->model + h.model_len + 1;
    const unsigned char *data =
        p + sizeof h + pad8((size_t)h.id_len + h.model_len + h.version_len + 3);
    r->rows = h.rows;
    r->n_features = h.n_features;
    r->n_outputs = h.n_outputs;
    r->inputs = (const float *)data;
    r->outputs = r->inputs + h.rows * h.n_features;
    r->labels = (const int64_t *)data;
}

static void *writer_main(void *arg) {
    kl_prediction_log *l = arg;
    unsigned char *scratch = NULL;
    size_t scratch_cap = 0;
    int dirty = 0;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->used == 0) {
            if (dirty) {
                pthread_mutex_unlock(&l->mu);
                if (sink_flush(l) != KL_OK) report(l, KL_EIO);
                dirty = 0;
                pthread_mutex_lock(&l->mu);
                continue;
            }
            if (l->stop) break;
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += PL_WRITER_PERIOD_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            l->writer_idle = 1;
            pthread_cond_timedwait(&l->cv, &l->mu, &until);
            l->writer_idle = 0;
            continue;
        }
        rec_hdr h;
        ring_get(l, l->head, &h, sizeof h);
        if (h.size > scratch_cap) {
            unsigned char *n = realloc(scratch, h.size);
            if (!n) { /* skip it: counted as failed */
                l->head = (l->head + h.size) % l->cap;
                l->used -= h.size;
                atomic_fetch_add(&l->failed, 1);
                continue;
            }
            scratch = n;
            scratch_cap = h.size;
        }
        ring_get(l, l->head, scratch, h.size);
        l->head = (l->head + h.size) % l->cap;
        l->used -= h.size;
        pthread_mutex_unlock(&l->mu);
        pl_record r;
        parse_record(scratch, &r);
        kl_clearerr();
        if (sink_write(l, &r) == KL_OK) {
            atomic_fetch_add(&l->written, 1);
            kl_counter *c = l->models[r.model_slot].records;
            if (c) kl_counter_add(c, 1);
            l->reported = 0;
        } else {
            atomic_fetch_add(&l->failed, 1);
            report(l, KL_EIO);
        }
        dirty = 1;
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    free(scratch);
    return NULL;
}

/* --- lifecycle ------------------------------------------------------------------------------ */

kl_status kl_prediction_log_create(const kl_prediction_log_opts *opts, kl_metrics *metrics,
                                   kl_prediction_log **out) {
    *out = NULL;
    if (!opts->dest || !*opts->dest) return kl_seterr(KL_EINVAL, "prediction log: no destination");
    if (!(opts->sample >= 0 && opts->sample <= 1))
        return kl_seterr(KL_EINVAL, "prediction log: sample rate %g must be within 0..1",
                         opts->sample);
    if (opts->queue_bytes < 1024 || opts->max_files < 1 || opts->max_file_bytes < 1 ||
        opts->join_rows < 1 || opts->accuracy_window < 1)
        return kl_seterr(KL_EINVAL, "prediction log: queue >= 1 KiB, files >= 1, file size >= 1, "
                                    "join rows >= 1 and accuracy window >= 1");
    kl_prediction_log *l = calloc(1, sizeof *l);
    if (!l) return kl_seterr(KL_ENOMEM, "prediction log: out of memory");
    l->o = *opts;
    l->metrics = metrics;
    l->dest = strdup(opts->dest);
    l->o.dest = l->dest;
    l->cap = opts->queue_bytes;
    l->ring = malloc(l->cap);
    l->sample_all = opts->sample >= 1;
    l->sample_cut = (uint64_t)(opts->sample * 18446744073709551616.0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&l->written, 0);
    atomic_init(&l->dropped, 0);
    atomic_init(&l->sampled_out, 0);
    atomic_init(&l->failed, 0);
    kl_status st =
        l->dest && l->ring ? KL_OK : kl_seterr(KL_ENOMEM, "prediction log: out of memory");
    if (st == KL_OK) st = pl_join_init(l);
    if (st == KL_OK && kl_prediction_sink_is_target(l->dest)) {
        st = pl_db_open(l, l->dest);
    } else if (st == KL_OK) {
        l->kind = PL_SINK_JSONL;
        l->where = strdup(l->dest);
        st = jsonl_open(l);
    }
    if (st == KL_OK) {
        int err = pthread_create(&l->writer, NULL, writer_main, l);
        if (err)
            st =
                kl_seterr(KL_EINTERNAL, "prediction log: cannot start a thread: %s", strerror(err));
        else
            l->writer_started = 1;
    }
    if (st != KL_OK) {
        kl_prediction_log_free(l);
        return st;
    }
    *out = l;
    return KL_OK;
}

void kl_prediction_log_free(kl_prediction_log *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (l->writer_started) pthread_join(l->writer, NULL);
    if (l->kind == PL_SINK_JSONL) {
        if (l->f) fclose(l->f);
    } else {
        pl_db_close(l);
    }
    pl_join_free(&l->join);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->line.p);
    free(l->ring);
    free(l->where);
    free(l->dest);
    free(l);
}
