/* drift_report.c — drift.json, the two SVG plots, report.html and the terminal table. */
#include "monitor/drift_report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/svg.h"

static const char *feature_name(const kl_drift_report *r, int j, char buf[24]) {
    if (r->feature_names && r->feature_names[j]) return r->feature_names[j];
    snprintf(buf, 24, "feature %d", j);
    return buf;
}

/* The label of prediction bin b: a class name, or the bin's range of predicted values. */
static const char *bin_name(const kl_drift_report *r, int b, char buf[64]) {
    const kl_reference *ref = r->ref;
    if (ref->n_classes > 0) {
        if (r->label_names && r->label_names[b]) return r->label_names[b];
        snprintf(buf, 64, "class %d", b);
    } else {
        const kl_ref_column *c = &ref->prediction;
        if (c->n_edges == 0)
            snprintf(buf, 64, "all");
        else if (b == 0)
            snprintf(buf, 64, "<= %.4g", c->edges[0]);
        else if (b == c->n_edges)
            snprintf(buf, 64, "> %.4g", c->edges[b - 1]);
        else
            snprintf(buf, 64, "(%.4g, %.4g]", c->edges[b - 1], c->edges[b]);
    }
    return buf;
}

/* --- drift.json --------------------------------------------------------------------------------
 */

static cJSON *number_or_null(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

char *kl_drift_report_json(const kl_drift_report *r) {
    const kl_drift_result *res = r->res;
    const kl_drift_log *log = r->log;
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "log", r->log_path);
    cJSON_AddStringToObject(root, "model", r->model_path);
    cJSON_AddNumberToObject(root, "window", (double)r->window);
    cJSON_AddNumberToObject(root, "rows", (double)res->rows);
    cJSON *lg = cJSON_AddObjectToObject(root, "log_lines");
    if (lg) {
        cJSON_AddNumberToObject(lg, "lines", (double)log->lines);
        cJSON_AddNumberToObject(lg, "prediction_records", (double)log->records);
        cJSON_AddNumberToObject(lg, "feedback_records", (double)log->feedback);
        cJSON_AddNumberToObject(lg, "other_model_records", (double)log->other_model);
        cJSON_AddNumberToObject(lg, "skipped", (double)log->skipped);
        cJSON_AddNumberToObject(lg, "rows", (double)log->rows);
    }
    cJSON *th = cJSON_AddObjectToObject(root, "psi_thresholds");
    if (th) {
        cJSON_AddNumberToObject(th, "moderate", KL_DRIFT_PSI_MODERATE);
        cJSON_AddNumberToObject(th, "large", KL_DRIFT_PSI_LARGE);
    }
    cJSON_AddNumberToObject(root, "psi_floor", KL_DRIFT_PSI_FLOOR);
    cJSON_AddItemToObject(root, "max_psi", number_or_null(res->max_psi));
    cJSON_AddItemToObject(root, "max_ks", number_or_null(res->max_ks));
    cJSON *pred = cJSON_AddObjectToObject(root, "prediction");
    if (pred) {
        cJSON_AddItemToObject(pred, "psi", number_or_null(res->prediction_psi));
        cJSON_AddNumberToObject(pred, "rows", (double)res->prediction_rows);
        cJSON *bins = cJSON_AddArrayToObject(pred, "bins");
        for (int b = 0; bins && b < res->n_pred_bins; b++) {
            char buf[64];
            cJSON *o = cJSON_CreateObject();
            if (!o || !cJSON_AddItemToArray(bins, o)) {
                cJSON_Delete(o);
                break;
            }
            cJSON_AddStringToObject(o, "name", bin_name(r, b, buf));
            cJSON_AddNumberToObject(o, "reference", res->pred_expected[b]);
            cJSON_AddNumberToObject(o, "window", res->pred_actual[b]);
        }
    }
    cJSON *top = cJSON_AddArrayToObject(root, "top_features");
    for (int i = 0; top && i < res->n_top; i++)
        cJSON_AddItemToArray(top, cJSON_CreateNumber(res->top[i]));
    cJSON *feats = cJSON_AddArrayToObject(root, "features");
    for (int j = 0; feats && j < res->n_features; j++) {
        char buf[24];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(feats, o)) {
            cJSON_Delete(o);
            break;
        }
        cJSON_AddNumberToObject(o, "index", j);
        cJSON_AddStringToObject(o, "name", feature_name(r, j, buf));
        cJSON_AddItemToObject(o, "psi", number_or_null(res->psi[j]));
        cJSON_AddItemToObject(o, "ks", number_or_null(res->ks[j]));
        cJSON_AddNumberToObject(o, "n", (double)res->n[j]);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* --- SVG ---------------------------------------------------------------------------------------
 */

/* A y axis from 0 to top over [y0 (bottom), y0 - h], with 5 ticks and light grid lines. */
static void y_axis(FILE *f, double L, double R, double y0, double h, double top) {
    for (int t = 0; t <= 4; t++) {
        double v = top * t / 4, y = y0 - h * t / 4;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                L, y, R, y, L - 6, y + 4, v);
    }
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, y0,
            R, y0);
}

char *kl_drift_svg_psi(const kl_drift_report *r) {
    const kl_drift_result *res = r->res;
    int d = res->n_features;
    double W = 960, H = 380, L = 70, R = W - 90, T = 44, B = H - 70; /* labels right of R */
    /* The axis stops at 1 so the 0.1 and 0.25 lines stay readable; taller bars are clipped and
     * carry their value (every PSI above 0.25 is "large" anyway). */
    double top = isfinite(res->max_psi) && res->max_psi * 1.1 > 0.3 ? res->max_psi * 1.1 : 0.3;
    if (top > 1) top = 1;
    char *text = NULL, title[128], buf[24];
    size_t len = 0;
    snprintf(title, sizeof title, "PSI per feature (%lld rows)", (long long)res->rows);
    FILE *f = kl_svg_begin(&text, &len, W, H, title);
    if (!f) return NULL;
    y_axis(f, L, R, B, B - T, top);
    double bw = (R - L) / (d > 0 ? d : 1);
    for (int j = 0; j < d; j++) {
        double p = res->psi[j];
        if (!isfinite(p)) continue;
        double h = (B - T) * (p < top ? p : top) / top;
        const char *color = p > KL_DRIFT_PSI_LARGE      ? "#d62728"
                            : p > KL_DRIFT_PSI_MODERATE ? "#ff7f0e"
                                                        : "#2ca02c";
        fprintf(f,
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\">"
                "<title>",
                L + j * bw, B - h, bw > 2 ? bw * 0.85 : bw, h, color);
        kl_svg_text(f, feature_name(r, j, buf));
        fprintf(f, ": PSI %.4f, KS %.4f</title></rect>\n", p, res->ks[j]);
        if (p > top && d <= 60)
            fprintf(
                f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%.3g</text>\n",
                L + (j + 0.5) * bw, T - 3, p);
    }
    /* The rules of thumb as dashed lines. */
    const double lines[2] = {KL_DRIFT_PSI_MODERATE, KL_DRIFT_PSI_LARGE};
    const char *names[2] = {"0.1 moderate", "0.25 large"};
    for (int i = 0; i < 2; i++) {
        double y = B - (B - T) * lines[i] / top;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-dasharray=\"6 4\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" fill=\"%s\">%s</text>\n",
                L, y, R, y, i ? "#d62728" : "#ff7f0e", R + 4, y + 4, "start",
                i ? "#d62728" : "#ff7f0e", names[i]);
    }
    /* Feature labels: every one when few, else about 12 evenly spaced indices. */
    int step = d <= 30 ? 1 : (d + 11) / 12;
    for (int j = 0; j < d; j += step) {
        double x = L + (j + 0.5) * bw;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                "transform=\"rotate(-40 %.1f %.1f)\">",
                x, B + 14, x, B + 14);
        kl_svg_text(f, d <= 30 ? feature_name(r, j, buf) : (snprintf(buf, 24, "%d", j), buf));
        fputs("</text>\n", f);
    }
    fprintf(f,
            "<text x=\"18\" y=\"%.1f\" transform=\"rotate(-90 18 %.1f)\" "
            "text-anchor=\"middle\">PSI</text>\n",
            (T + B) / 2, (T + B) / 2);
    return kl_svg_end(f, &text);
}

char *kl_drift_svg_prediction(const kl_drift_report *r) {
    const kl_drift_result *res = r->res;
    int k = res->n_pred_bins;
    double W = 720, H = 380, L = 70, R = W - 20, T = 60, B = H - 80;
    char *text = NULL, title[160], buf[64];
    size_t len = 0;
    if (isfinite(res->prediction_psi))
        snprintf(title, sizeof title, "Predictions: reference vs window (PSI %.4f)",
                 res->prediction_psi);
    else
        snprintf(title, sizeof title, "Predictions: no prediction drift available");
    FILE *f = kl_svg_begin(&text, &len, W, H, title);
    if (!f) return NULL;
    double top = 0;
    for (int b = 0; b < k; b++)
        top = fmax(top, fmax(res->pred_expected[b], res->pred_actual[b]));
    top = top > 0 ? top * 1.1 : 1;
    y_axis(f, L, R, B, B - T, top);
    double gw = (R - L) / (k > 0 ? k : 1);
    for (int b = 0; b < k; b++) {
        double he = (B - T) * res->pred_expected[b] / top, ha = (B - T) * res->pred_actual[b] / top;
        double x = L + b * gw;
        fprintf(f,
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#1f77b4\">"
                "<title>reference %.4f</title></rect>\n"
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#ff7f0e\">"
                "<title>window %.4f</title></rect>\n",
                x + gw * 0.1, B - he, gw * 0.38, he, res->pred_expected[b], x + gw * 0.5, B - ha,
                gw * 0.38, ha, res->pred_actual[b]);
        double cx = x + gw / 2;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                "transform=\"rotate(-30 %.1f %.1f)\">",
                cx, B + 14, cx, B + 14);
        kl_svg_text(f, bin_name(r, b, buf));
        fputs("</text>\n", f);
    }
    fprintf(f,
            "<rect x=\"%.1f\" y=\"34\" width=\"12\" height=\"12\" fill=\"#1f77b4\"/>"
            "<text x=\"%.1f\" y=\"45\">reference (%s split)</text>\n"
            "<rect x=\"%.1f\" y=\"34\" width=\"12\" height=\"12\" fill=\"#ff7f0e\"/>"
            "<text x=\"%.1f\" y=\"45\">window</text>\n",
            L, L + 16, r->ref->has_prediction ? r->ref->prediction_split : "no", L + 240, L + 256);
    fprintf(f,
            "<text x=\"18\" y=\"%.1f\" transform=\"rotate(-90 18 %.1f)\" "
            "text-anchor=\"middle\">fraction of rows</text>\n",
            (T + B) / 2, (T + B) / 2);
    return kl_svg_end(f, &text);
}

/* --- report.html -------------------------------------------------------------------------------
 */

/* The SVG without its XML declaration, inline in HTML. */
static void inline_svg(FILE *f, const char *svg) {
    if (!svg) return;
    const char *at = strstr(svg, "<svg");
    fputs(at ? at : svg, f);
}

static void html_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "<td>%.4f</td>", v);
    else
        fputs("<td>n/a</td>", f);
}

static const char *level(double psi) {
    return !isfinite(psi)                ? ""
           : psi > KL_DRIFT_PSI_LARGE    ? " class=\"large\""
           : psi > KL_DRIFT_PSI_MODERATE ? " class=\"moderate\""
                                         : "";
}

static void feature_row(FILE *f, const kl_drift_report *r, int j) {
    char buf[24];
    const kl_drift_result *res = r->res;
    fprintf(f, "<tr%s><td>%d</td><td>", level(res->psi[j]), j);
    kl_svg_text(f, feature_name(r, j, buf));
    fputs("</td>", f);
    html_num(f, res->psi[j]);
    html_num(f, res->ks[j]);
    fprintf(f, "<td>%lld</td></tr>\n", (long long)res->n[j]);
}

char *kl_drift_report_html(const kl_drift_report *r) {
    const kl_drift_result *res = r->res;
    const kl_drift_log *log = r->log;
    char *psi_svg = kl_drift_svg_psi(r), *pred_svg = kl_drift_svg_prediction(r);
    char *text = NULL;
    size_t len = 0;
    FILE *f = psi_svg && pred_svg ? open_memstream(&text, &len) : NULL;
    if (!f) {
        free(psi_svg);
        free(pred_svg);
        return NULL;
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<title>kiln drift report</title>\n<style>\n"
          "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
          "margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
          "td:nth-child(2),th:nth-child(2){text-align:left}tr.moderate{background:#fff3e0}"
          "tr.large{background:#ffebee}.note{color:#666}\n</style></head><body>\n"
          "<h1>Drift report</h1>\n<p>Log <code>",
          f);
    kl_svg_text(f, r->log_path);
    fputs("</code> against the reference profile of <code>", f);
    kl_svg_text(f, r->model_path);
    fprintf(f, "</code> (%lld training rows).</p>\n", (long long)r->ref->rows);
    fprintf(f,
            "<table><tr><th>rows in the window</th><td>%lld</td></tr>\n"
            "<tr><th>prediction records / lines skipped</th><td>%lld / %lld</td></tr>\n"
            "<tr><th>prediction PSI</th>",
            (long long)res->rows, (long long)log->records, (long long)log->skipped);
    html_num(f, res->prediction_psi);
    fputs("</tr>\n<tr><th>largest feature PSI</th>", f);
    html_num(f, res->max_psi);
    fputs("</tr>\n<tr><th>largest feature KS</th>", f);
    html_num(f, res->max_ks);
    int moderate = 0, large = 0;
    for (int j = 0; j < res->n_features; j++) {
        moderate += res->psi[j] > KL_DRIFT_PSI_MODERATE && res->psi[j] <= KL_DRIFT_PSI_LARGE;
        large += res->psi[j] > KL_DRIFT_PSI_LARGE;
    }
    fprintf(f,
            "</tr>\n<tr><th>features with PSI &gt; 0.25 / 0.1&ndash;0.25</th><td>%d / %d of "
            "%d</td></tr></table>\n",
            large, moderate, res->n_features);
    fputs("<p class=\"note\">PSI = &Sigma; (a&minus;e) ln(a/e) over the reference's decile bins, "
          "fractions floored at 1e-4; below 0.1 stable, 0.1&ndash;0.25 moderate, above 0.25 "
          "large. KS = sup |F<sub>window</sub> &minus; F<sub>ref</sub>|, F<sub>ref</sub> "
          "interpolated through the 101 reference percentiles.</p>\n",
          f);
    fputs("<h2>Top features by PSI</h2>\n<table><tr><th>#</th><th>feature</th><th>PSI</th>"
          "<th>KS</th><th>values</th></tr>\n",
          f);
    for (int i = 0; i < res->n_top; i++)
        feature_row(f, r, res->top[i]);
    fputs("</table>\n<h2>PSI per feature</h2>\n", f);
    inline_svg(f, psi_svg);
    fputs("<h2>Prediction distribution</h2>\n", f);
    inline_svg(f, pred_svg);
    fputs("<details><summary>Every feature</summary>\n<table><tr><th>#</th><th>feature</th>"
          "<th>PSI</th><th>KS</th><th>values</th></tr>\n",
          f);
    for (int j = 0; j < res->n_features; j++)
        feature_row(f, r, j);
    fputs("</table></details>\n</body></html>\n", f);
    free(psi_svg);
    free(pred_svg);
    if (fclose(f)) {
        free(text);
        return NULL;
    }
    return text;
}

/* --- files and terminal ------------------------------------------------------------------------
 */

kl_status kl_drift_report_write(const char *dir, const kl_drift_report *r) {
    KL_TRY(kl_file_mkdirs(dir));
    KL_TRY(kl_file_write_text_in(dir, "drift.json", kl_drift_report_json(r)));
    KL_TRY(kl_file_write_text_in(dir, "psi.svg", kl_drift_svg_psi(r)));
    KL_TRY(kl_file_write_text_in(dir, "prediction.svg", kl_drift_svg_prediction(r)));
    return kl_file_write_text_in(dir, "report.html", kl_drift_report_html(r));
}

static void term_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, " %9.4f", v);
    else
        fprintf(f, " %9s", "n/a");
}

void kl_drift_report_print(FILE *f, const kl_drift_report *r) {
    const kl_drift_result *res = r->res;
    const kl_drift_log *log = r->log;
    fprintf(f, "rows            %lld (of %lld logged in %lld prediction records)\n",
            (long long)res->rows, (long long)log->rows, (long long)log->records);
    fprintf(f, "lines skipped   %lld (malformed)\n", (long long)log->skipped);
    fprintf(f, "prediction PSI ");
    term_num(f, res->prediction_psi);
    fprintf(f, "   (reference: %s split)\n",
            r->ref->has_prediction ? r->ref->prediction_split : "none");
    fprintf(f, "max feature PSI");
    term_num(f, res->max_psi);
    fprintf(f, "\nmax feature KS ");
    term_num(f, res->max_ks);
    fprintf(f, "\n\ntop features by PSI (> 0.25 large, > 0.1 moderate):\n");
    fprintf(f, "  %-24s %9s %9s %8s\n", "feature", "PSI", "KS", "values");
    for (int i = 0; i < res->n_top; i++) {
        char buf[24];
        int j = res->top[i];
        fprintf(f, "  %-24.24s", feature_name(r, j, buf));
        term_num(f, res->psi[j]);
        term_num(f, res->ks[j]);
        fprintf(f, " %8lld%s\n", (long long)res->n[j],
                res->psi[j] > KL_DRIFT_PSI_LARGE      ? "  large"
                : res->psi[j] > KL_DRIFT_PSI_MODERATE ? "  moderate"
                                                      : "");
    }
}
