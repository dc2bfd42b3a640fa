/* progress.h — what a person watching training sees: a bar on a terminal, plain lines otherwise. */
#ifndef KL_PROGRESS_H
#define KL_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    KL_PROGRESS_NONE = 0,  /* silent (tests) */
    KL_PROGRESS_PLAIN = 1, /* one line every log_every steps */
    KL_PROGRESS_BAR = 2,   /* a redrawn bar with ETA */
} kl_progress_mode;

typedef struct {
    kl_progress_mode mode;   /* how to show progress */
    FILE *out;               /* where (stderr) */
    int64_t total_steps;     /* steps in the run, for the ETA */
    int64_t steps_per_epoch; /* steps in one epoch */
    int64_t epochs;          /* epochs in the run */
    int64_t log_every;       /* steps between plain lines */
    double t_start;          /* monotonic seconds at start */
    double t_window;         /* start of the current throughput window */
    int64_t window_samples;  /* samples since t_window */
    double samples_per_s;    /* smoothed throughput */
    int bar_drawn;           /* a bar line is on screen and needs a newline */
    FILE *tee;               /* plain copy of the progress lines (a run's train.log), or NULL */
} kl_progress;

/* Picks the mode ("auto" → bar on a terminal, plain otherwise). */
kl_progress_mode kl_progress_parse(const char *mode, FILE *out);

void kl_progress_start(kl_progress *p, kl_progress_mode mode, FILE *out, int64_t total_steps,
                       int64_t steps_per_epoch, int64_t epochs, int64_t log_every);

/* Reports a finished step (0-based global step). */
void kl_progress_step(kl_progress *p, int64_t step, int64_t epoch, int rows, double loss,
                      double lr);

/* Prints an end-of-epoch line (always, whatever the mode but NONE). */
void kl_progress_epoch(kl_progress *p, int64_t epoch, double train_loss, double val_loss,
                       double val_acc, int has_val, int is_classifier);

/* Monotonic clock in seconds. */
double kl_now(void);

#endif
