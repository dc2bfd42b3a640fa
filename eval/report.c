/* report.c — JSON, Markdown, SVG and terminal forms of an evaluation (report.h). */
#include "eval/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/svg.h"

static const char *const cls_files[] = {"report.json", "report.md", "confusion.svg", "roc.svg",
                                        NULL};
static const char *const reg_files[] = {"report.json", "report.md", "predicted_vs_true.svg", NULL};

const char *const *kl_eval_report_files(kl_task task) {
    return task == KL_TASK_CLASSIFICATION ? cls_files : reg_files;
}

static const char *class_name(const kl_eval_result *r, int c, char buf[16]) {
    if (r->class_names && r->class_names[c]) return r->class_names[c];
    snprintf(buf, 16, "%d", c);
    return buf;
}

/* --- JSON ----------------------------------------------------------------------------------- */

/* cJSON writes NaN as null, which is what a reader expects of an undefined metric. */
static void add_scalars(cJSON *o, const kl_eval_result *r, const kl_eval_scalars *s) {
    const char *const *names = kl_eval_metric_names(r->task);
    for (int i = 0; names[i]; i++) {
        double v = NAN;
        if (kl_eval_metric(&(kl_eval_result){.task = r->task, .m = *s}, names[i], &v) == KL_OK)
            cJSON_AddNumberToObject(o, names[i], v);
    }
}

static void add_meta(cJSON *root, const kl_eval_meta *meta) {
    if (!meta) return;
    if (meta->model) cJSON_AddStringToObject(root, "model", meta->model);
    if (meta->model_dir) cJSON_AddStringToObject(root, "model_dir", meta->model_dir);
    if (meta->data) cJSON_AddStringToObject(root, "data", meta->data);
    if (meta->data_digest) cJSON_AddStringToObject(root, "data_digest", meta->data_digest);
}

char *kl_eval_report_json(const kl_eval_result *r, const kl_eval_meta *meta) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    int cls = r->task == KL_TASK_CLASSIFICATION;
    cJSON_AddStringToObject(root, "kiln_version", KILN_VERSION);
    add_meta(root, meta);
    cJSON_AddStringToObject(root, "task", cls ? "classification" : "regression");
    cJSON_AddNumberToObject(root, "rows", (double)r->n);
    add_scalars(cJSON_AddObjectToObject(root, "metrics"), r, &r->m);
    if (r->base_source[0]) {
        cJSON *b = cJSON_AddObjectToObject(root, "baseline");
        cJSON_AddStringToObject(b, "kind", cls ? "majority_class" : "mean");
        cJSON_AddStringToObject(b, "fitted_on", r->base_source);
        char buf[16];
        if (cls)
            cJSON_AddStringToObject(b, "class", class_name(r, r->base_class, buf));
        else
            cJSON_AddNumberToObject(b, "prediction", r->base_mean);
        add_scalars(cJSON_AddObjectToObject(b, "metrics"), r, &r->base);
    }
    if (cls) {
        int C = r->n_classes;
        cJSON *classes = cJSON_AddArrayToObject(root, "classes");
        cJSON *labels = cJSON_CreateArray(), *matrix = cJSON_CreateArray();
        for (int c = 0; c < C; c++) {
            char buf[16];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", class_name(r, c, buf));
            cJSON_AddNumberToObject(o, "precision", r->precision[c]);
            cJSON_AddNumberToObject(o, "recall", r->recall[c]);
            cJSON_AddNumberToObject(o, "f1", r->f1[c]);
            cJSON_AddNumberToObject(o, "roc_auc", r->auc[c]);
            cJSON_AddNumberToObject(o, "support", (double)r->support[c]);
            cJSON_AddNumberToObject(o, "predicted", (double)r->predicted[c]);
            cJSON_AddItemToArray(classes, o);
            cJSON_AddItemToArray(labels, cJSON_CreateString(class_name(r, c, buf)));
            cJSON *row = cJSON_CreateArray();
            for (int k = 0; k < C; k++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)r->confusion[c * C + k]));
            cJSON_AddItemToArray(matrix, row);
        }
        cJSON *cm = cJSON_AddObjectToObject(root, "confusion_matrix");
        cJSON_AddStringToObject(cm, "rows", "true class");
        cJSON_AddStringToObject(cm, "columns", "predicted class");
        cJSON_AddItemToObject(cm, "labels", labels);
        cJSON_AddItemToObject(cm, "matrix", matrix);
        cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
        cJSON_AddStringToObject(cal, "binning",
                                "15 equal-width bins (b/15, (b+1)/15] of the "
                                "maximum probability");
        cJSON_AddNumberToObject(cal, "ece", r->m.ece);
        cJSON *bins = cJSON_AddArrayToObject(cal, "bins");
        for (int b = 0; b < KL_ECE_BINS; b++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "lower", (double)b / KL_ECE_BINS);
            cJSON_AddNumberToObject(o, "upper", (double)(b + 1) / KL_ECE_BINS);
            cJSON_AddNumberToObject(o, "count", (double)r->ece_count[b]);
            cJSON_AddNumberToObject(o, "confidence", r->ece_conf[b]);
            cJSON_AddNumberToObject(o, "accuracy", r->ece_acc[b]);
            cJSON_AddItemToArray(bins, o);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* --- Markdown ------------------------------------------------------------------------------- */

/* A table cell: '|' and newlines would break the row. */
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++)
        if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static void md_num(FILE *f, double v) {
    if (isnan(v))
        fputs(" n/a |", f);
    else
        fprintf(f, " %.4f |", v);
}

char *kl_eval_report_markdown(const kl_eval_result *r, const kl_eval_meta *meta) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    int cls = r->task == KL_TASK_CLASSIFICATION;
    fprintf(f, "# Evaluation report\n\n");
    if (meta && meta->model) fprintf(f, "- model: `%s`\n", meta->model);
    if (meta && meta->data) fprintf(f, "- data: `%s` (%lld rows)\n", meta->data, (long long)r->n);
    if (meta && meta->data_digest) fprintf(f, "- data digest: `%s`\n", meta->data_digest);
    fprintf(f, "- task: %s\n- kiln %s\n\n", cls ? "classification" : "regression", KILN_VERSION);
    fprintf(f, "## Metrics\n\n| metric | model | baseline |\n|---|---:|---:|\n");
    const char *const *names = kl_eval_metric_names(r->task);
    for (int i = 0; names[i]; i++) {
        double m = NAN, b = NAN;
        kl_eval_metric(r, names[i], &m);
        if (r->base_source[0]) kl_eval_baseline_metric(r, names[i], &b);
        fprintf(f, "| %s |", names[i]);
        md_num(f, m);
        md_num(f, b);
        fputc('\n', f);
    }
    char buf[16];
    if (r->base_source[0]) {
        if (cls) {
            fprintf(f, "\nBaseline: always predict the majority class `");
            md_cell(f, class_name(r, r->base_class, buf));
        } else {
            fprintf(f, "\nBaseline: always predict the mean, `%.6g", r->base_mean);
        }
        fprintf(f, "` (fitted on the %s labels).\n", r->base_source);
    }
    if (cls) {
        int C = r->n_classes;
        fprintf(f, "\n## Per class\n\n| class | precision | recall | F1 | ROC-AUC | support | "
                   "predicted |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (int c = 0; c < C; c++) {
            fputs("| ", f);
            md_cell(f, class_name(r, c, buf));
            fputs(" |", f);
            md_num(f, r->precision[c]);
            md_num(f, r->recall[c]);
            md_num(f, r->f1[c]);
            md_num(f, r->auc[c]);
            fprintf(f, " %lld | %lld |\n", (long long)r->support[c], (long long)r->predicted[c]);
        }
        fprintf(f, "\n## Confusion matrix\n\nRows: true class; columns: predicted class.\n\n| |");
        for (int c = 0; c < C; c++) {
            fputc(' ', f);
            md_cell(f, class_name(r, c, buf));
            fputs(" |", f);
        }
        fputs("\n|---|", f);
        for (int c = 0; c < C; c++)
            fputs("---:|", f);
        fputc('\n', f);
        for (int c = 0; c < C; c++) {
            fputs("| ", f);
            md_cell(f, class_name(r, c, buf));
            fputs(" |", f);
            for (int k = 0; k < C; k++)
                fprintf(f, " %lld |", (long long)r->confusion[c * C + k]);
            fputc('\n', f);
        }
        fprintf(f, "\n![confusion matrix](confusion.svg)\n\n![ROC curves](roc.svg)\n");
        fprintf(f,
                "\n## Calibration\n\nECE %.4f over 15 equal-width bins of the maximum "
                "probability.\n\n| bin | rows | confidence | accuracy |\n|---|---:|---:|---:|\n",
                r->m.ece);
        for (int b = 0; b < KL_ECE_BINS; b++) {
            if (!r->ece_count[b]) continue;
            fprintf(f, "| (%.3f, %.3f] | %lld |", (double)b / KL_ECE_BINS,
                    (double)(b + 1) / KL_ECE_BINS, (long long)r->ece_count[b]);
            md_num(f, r->ece_conf[b]);
            md_num(f, r->ece_acc[b]);
            fputc('\n', f);
        }
    } else {
        fprintf(f, "\n![predicted against true values](predicted_vs_true.svg)\n");
    }
    if (fclose(f)) {
        free(text);
        return NULL;
    }
    return text;
}

/* --- SVG ------------------------------------------------------------------------------------ */

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

char *kl_eval_svg_confusion(const kl_eval_result *r) {
    if (r->task != KL_TASK_CLASSIFICATION) return NULL;
    int C = r->n_classes;
    double cell = C <= 10 ? 56 : C <= 30 ? 600.0 / C : 20, L = 130, T = 50;
    double W = fmax(L + cell * C + 30, 420), H = T + cell * C + 90;
    char *text = NULL, buf[16];
    size_t len = 0;
    FILE *f = kl_svg_begin(&text, &len, W, H, "Confusion matrix (rows: true, columns: predicted)");
    if (!f) return NULL;
    for (int c = 0; c < C; c++) {
        int64_t row = r->support[c];
        for (int k = 0; k < C; k++) {
            int64_t v = r->confusion[c * C + k];
            /* Shade by the share of the true class's rows, so rare classes still read. */
            double share = row ? (double)v / (double)row : 0;
            int g = (int)lround(255 - 200 * share);
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"rgb(%d,%d,255)\" stroke=\"#ccc\"><title>true ",
                    L + k * cell, T + c * cell, cell, cell, g, g);
            kl_svg_text(f, class_name(r, c, buf));
            fputs(", predicted ", f);
            kl_svg_text(f, class_name(r, k, buf));
            fprintf(f, ": %lld</title></rect>\n", (long long)v);
            if (cell >= 18)
                fprintf(f,
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                        "dominant-baseline=\"middle\" fill=\"%s\">%lld</text>\n",
                        L + (k + 0.5) * cell, T + (c + 0.5) * cell, share > 0.6 ? "white" : "black",
                        (long long)v);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">",
                L - 6, T + (c + 0.5) * cell);
        kl_svg_text(f, class_name(r, c, buf));
        fputs("</text>\n", f);
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                "transform=\"rotate(-45 %.1f %.1f)\">",
                L + (c + 0.5) * cell, T + C * cell + 14, L + (c + 0.5) * cell, T + C * cell + 14);
        kl_svg_text(f, class_name(r, c, buf));
        fputs("</text>\n", f);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">predicted class</text>\n"
            "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 14 %.1f)\">true class</text>\n",
            L + C * cell / 2, H - 10, T + C * cell / 2, T + C * cell / 2);
    return kl_svg_end(f, &text);
}

char *kl_eval_svg_roc(const kl_eval_result *r) {
    if (r->task != KL_TASK_CLASSIFICATION) return NULL;
    int C = r->n_classes;
    const double S = 420, L = 60, T = 40, legend = 230;
    double W = L + S + 20 + legend, H = T + S + 50;
    char *text = NULL, buf[16];
    size_t len = 0;
    FILE *f = kl_svg_begin(&text, &len, W, H, "ROC curves (one class against the rest)");
    if (!f) return NULL;
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"black\"/>\n<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" "
            "stroke=\"#999\" stroke-dasharray=\"4 4\"/>\n",
            L, T, S, S, L, T + S, L + S, T);
    for (int t = 0; t <= 4; t++) {
        double v = t / 4.0;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.2f</text>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                "dominant-baseline=\"middle\">%.2f</text>\n",
                L + v * S, T + S + 16, v, L - 6, T + S - v * S, v);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">false positive rate</text>\n"
            "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 16 %.1f)\">true positive rate</text>\n",
            L + S / 2, T + S + 40, T + S / 2, T + S / 2);
    for (int c = 0; c < C; c++) {
        const char *color = palette[c % (int)(sizeof palette / sizeof palette[0])];
        double *x = NULL, *y = NULL;
        int64_t n = 0;
        double ly = T + 10 + 18 * c;
        if (ly < T + S) {
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" fill=\"%s\">", L + S + 20, ly, color);
            kl_svg_text(f, class_name(r, c, buf));
            if (isnan(r->auc[c]))
                fputs(" (AUC undefined)</text>\n", f);
            else
                fprintf(f, " (AUC %.3f)</text>\n", r->auc[c]);
        }
        if (kl_eval_roc_curve(r->pred, r->n, C, r->labels, c, &x, &y, &n) != KL_OK) continue;
        /* Thousands of points draw the same line as every k-th one plus the last. */
        int64_t step = n > 2000 ? n / 2000 : 1;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
        for (int64_t i = 0; i < n; i += step)
            fprintf(f, "%.1f,%.1f ", L + x[i] * S, T + S - y[i] * S);
        fprintf(f, "%.1f,%.1f\"/>\n", L + x[n - 1] * S, T + S - y[n - 1] * S);
        free(x);
        free(y);
    }
    return kl_svg_end(f, &text);
}

char *kl_eval_svg_predicted_vs_true(const kl_eval_result *r) {
    if (r->task != KL_TASK_REGRESSION) return NULL;
    const double S = 420, L = 70, T = 40;
    double W = L + S + 30, H = T + S + 50;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < r->n; i++) {
        double a = r->targets[i], b = r->pred[i];
        lo = fmin(lo, fmin(a, b));
        hi = fmax(hi, fmax(a, b));
    }
    if (!(hi > lo)) lo -= 1, hi += 1;
    char *text = NULL;
    size_t len = 0;
    FILE *f = kl_svg_begin(&text, &len, W, H, "Predicted against true values");
    if (!f) return NULL;
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"black\"/>\n<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" "
            "stroke=\"#999\" stroke-dasharray=\"4 4\"/>\n"
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">true value (%.4g to %.4g)</text>\n"
            "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 16 %.1f)\">predicted value</text>\n",
            L, T, S, S, L, T + S, L + S, T, L + S / 2, T + S + 30, lo, hi, T + S / 2, T + S / 2);
    int64_t step = r->n > 5000 ? r->n / 5000 : 1;
    for (int64_t i = 0; i < r->n; i += step)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"#1f77b4\" opacity=\"0.6\"/>\n",
                L + (r->targets[i] - lo) / (hi - lo) * S,
                T + S - (r->pred[i] - lo) / (hi - lo) * S);
    return kl_svg_end(f, &text);
}

/* --- files and terminal --------------------------------------------------------------------- */

kl_status kl_eval_report_write(const char *dir, const kl_eval_result *r, const kl_eval_meta *meta) {
    KL_TRY(kl_file_mkdirs(dir));
    KL_TRY(kl_file_write_text_in(dir, "report.json", kl_eval_report_json(r, meta)));
    KL_TRY(kl_file_write_text_in(dir, "report.md", kl_eval_report_markdown(r, meta)));
    if (r->task == KL_TASK_CLASSIFICATION) {
        KL_TRY(kl_file_write_text_in(dir, "confusion.svg", kl_eval_svg_confusion(r)));
        KL_TRY(kl_file_write_text_in(dir, "roc.svg", kl_eval_svg_roc(r)));
    } else {
        KL_TRY(
            kl_file_write_text_in(dir, "predicted_vs_true.svg", kl_eval_svg_predicted_vs_true(r)));
    }
    return KL_OK;
}

static void num(FILE *f, double v) {
    if (isnan(v))
        fprintf(f, " %10s", "n/a");
    else
        fprintf(f, " %10.4f", v);
}

void kl_eval_print_table(FILE *f, const kl_eval_result *r) {
    int cls = r->task == KL_TASK_CLASSIFICATION;
    fprintf(f, "%-16s %10s %10s\n", "metric", "model", "baseline");
    const char *const *names = kl_eval_metric_names(r->task);
    for (int i = 0; names[i]; i++) {
        double m = NAN, b = NAN;
        kl_eval_metric(r, names[i], &m);
        if (r->base_source[0]) kl_eval_baseline_metric(r, names[i], &b);
        fprintf(f, "%-16s", names[i]);
        num(f, m);
        num(f, b);
        fputc('\n', f);
    }
    char buf[16];
    if (r->base_source[0] && cls)
        fprintf(f, "baseline: majority class \"%s\" (from the %s labels)\n",
                class_name(r, r->base_class, buf), r->base_source);
    else if (r->base_source[0])
        fprintf(f, "baseline: the mean %.6g (from the %s targets)\n", r->base_mean, r->base_source);
    if (!cls) return;
    fprintf(f, "\n%-16s %10s %10s %10s %10s %10s\n", "class", "precision", "recall", "f1",
            "roc_auc", "support");
    for (int c = 0; c < r->n_classes; c++) {
        fprintf(f, "%-16.16s", class_name(r, c, buf));
        num(f, r->precision[c]);
        num(f, r->recall[c]);
        num(f, r->f1[c]);
        num(f, r->auc[c]);
        fprintf(f, " %10lld\n", (long long)r->support[c]);
    }
}
