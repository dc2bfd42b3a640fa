/* export_onnx.c — `kiln export-onnx BUNDLE [-o FILE]`: a bundle's model as an ONNX file. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/bundle.h"

static void usage(FILE *f) {
    fprintf(
        f, "usage: kiln export-onnx BUNDLE [-o FILE]\n"
           "\n"
           "Writes the model of bundle directory BUNDLE as ONNX (IR 8, opset 17): input \"input\"\n"
           "float32 [batch, features] of raw features, the bundle's (x - shift) * scale, the MLP,\n"
           "and a softmax output \"probabilities\" (classification) or \"predictions\"\n"
           "(regression).\n"
           "\n"
           "options:\n"
           "  -o, --output FILE   where to write (default: BUNDLE/model.onnx)\n"
           "  -h, --help          show this help\n");
}

int kl_cmd_export_onnx(int argc, char **argv) {
    const char *bundle_dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln export-onnx: %s needs a file name\n", a);
                return 2;
            }
            out = argv[++i];
        } else if (!strncmp(a, "--output=", 9)) {
            out = a + 9;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "kiln export-onnx: unknown option \"%s\"\n", a);
            usage(stderr);
            return 2;
        } else if (!bundle_dir) {
            bundle_dir = a;
        } else {
            fprintf(stderr, "kiln export-onnx: unexpected argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!bundle_dir) {
        fprintf(stderr, "kiln export-onnx: missing the BUNDLE directory\n");
        usage(stderr);
        return 2;
    }
    char default_out[4096];
    if (!out || !*out) {
        int n = snprintf(default_out, sizeof default_out, "%s/model.onnx", bundle_dir);
        if (n < 0 || (size_t)n >= sizeof default_out) {
            fprintf(stderr, "kiln export-onnx: bundle path too long\n");
            return 2;
        }
        out = default_out;
    }
    kl_bundle b;
    if (kl_bundle_load(bundle_dir, &b) != KL_OK) return kl_cli_fail("export-onnx");
    kl_status s = kl_bundle_export_onnx(&b, out);
    kl_bundle_free(&b);
    if (s != KL_OK) return kl_cli_fail("export-onnx");
    printf("wrote %s\n", out);
    return 0;
}
