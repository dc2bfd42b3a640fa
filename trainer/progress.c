/* progress.c — progress bar and plain progress lines. */
#include "trainer/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

double kl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

kl_progress_mode kl_progress_parse(const char *mode, FILE *out) {
    if (!mode || !strcmp(mode, "auto"))
        return isatty(fileno(out)) ? KL_PROGRESS_BAR : KL_PROGRESS_PLAIN;
    if (!strcmp(mode, "bar")) return KL_PROGRESS_BAR;
    if (!strcmp(mode, "plain")) return KL_PROGRESS_PLAIN;
    return KL_PROGRESS_NONE;
}

void kl_progress_start(kl_progress *p, kl_progress_mode mode, FILE *out, int64_t total_steps,
                       int64_t steps_per_epoch, int64_t epochs, int64_t log_every) {
    memset(p, 0, sizeof *p);
    p->mode = mode;
    p->out = out;
    p->total_steps = total_steps;
    p->steps_per_epoch = steps_per_epoch;
    p->epochs = epochs;
    p->log_every = log_every > 0 ? log_every : 100;
    p->t_start = p->t_window = kl_now();
}

static void fmt_eta(double s, char *buf, size_t cap) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

void kl_progress_step(kl_progress *p, int64_t step, int64_t epoch, int rows, double loss,
                      double lr) {
    if (p->mode == KL_PROGRESS_NONE && !p->tee) return;
    p->window_samples += rows;
    double now = kl_now();
    double dt = now - p->t_window;
    if (dt >= 0.5) {
        double rate = p->window_samples / dt;
        p->samples_per_s = p->samples_per_s > 0 ? 0.7 * p->samples_per_s + 0.3 * rate : rate;
        p->t_window = now;
        p->window_samples = 0;
    }
    int64_t done = step + 1;
    double elapsed = now - p->t_start;
    double eta = done > 0 ? elapsed / done * (p->total_steps - done) : -1;
    char etas[32];
    fmt_eta(eta, etas, sizeof etas);
    int64_t in_epoch = p->steps_per_epoch ? step % p->steps_per_epoch + 1 : done;
    if (p->mode == KL_PROGRESS_BAR &&
        !(dt < 0.1 && done != p->total_steps && in_epoch != p->steps_per_epoch)) {
        const int width = 24;
        int fill = p->total_steps ? (int)(width * done / p->total_steps) : 0;
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(
            p->out,
            "\r\033[Kepoch %lld/%lld [%s] step %lld/%lld loss %.4f lr %.2e %.0f samples/s ETA %s",
            (long long)epoch + 1, (long long)p->epochs, bar, (long long)in_epoch,
            (long long)p->steps_per_epoch, loss, lr, p->samples_per_s, etas);
        fflush(p->out);
        p->bar_drawn = 1;
    }
    if (done % p->log_every == 0 || done == p->total_steps) {
        FILE *outs[2] = {p->mode == KL_PROGRESS_PLAIN ? p->out : NULL, p->tee};
        for (int i = 0; i < 2; i++) {
            if (!outs[i]) continue;
            fprintf(outs[i],
                    "epoch %lld/%lld step %lld/%lld loss %.4f lr %.2e %.0f samples/s ETA %s\n",
                    (long long)epoch + 1, (long long)p->epochs, (long long)in_epoch,
                    (long long)p->steps_per_epoch, loss, lr, p->samples_per_s, etas);
            fflush(outs[i]);
        }
    }
}

void kl_progress_epoch(kl_progress *p, int64_t epoch, double train_loss, double val_loss,
                       double val_acc, int has_val, int is_classifier) {
    FILE *outs[2] = {p->mode == KL_PROGRESS_NONE ? NULL : p->out, p->tee};
    if (outs[0] && p->bar_drawn) {
        fputc('\n', p->out);
        p->bar_drawn = 0;
    }
    for (int i = 0; i < 2; i++) {
        FILE *f = outs[i];
        if (!f) continue;
        fprintf(f, "epoch %lld/%lld done: train_loss %.4f", (long long)epoch + 1,
                (long long)p->epochs, train_loss);
        if (has_val) {
            fprintf(f, " val_loss %.4f", val_loss);
            if (is_classifier) fprintf(f, " val_accuracy %.4f", val_acc);
        }
        fprintf(f, " (%.1fs)\n", kl_now() - p->t_start);
        fflush(f);
    }
}
