/* main.c — the kiln binary: one subcommand per lifecycle stage. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/status.h"

typedef struct {
    const char *name;                  /* subcommand as typed */
    int (*run)(int argc, char **argv); /* entry point */
    const char *summary;               /* one line for `kiln help` */
} command;

static const command commands[] = {
    {"train", kl_cmd_train, "train a model from a YAML config (--config FILE [--set k=v ...])"},
    {"predict", kl_cmd_predict, "score a file with a model bundle (--model DIR --input FILE)"},
    {"export-onnx", kl_cmd_export_onnx, "write a bundle's model as ONNX (BUNDLE -o FILE)"},
    {"data", kl_cmd_data, "datasets: describe, snapshot, diff, ingest, check"},
    {"tracking", kl_cmd_tracking, "send spooled MLflow records (sync)"},
    {"register", kl_cmd_register, "register a run's model in MLflow (--run ID --name NAME)"},
    {"alias", kl_cmd_alias, "set or read a registered model's alias (set|get NAME ALIAS ...)"},
    {"eval", kl_cmd_eval, "metrics and a report of a model on labelled data (--model M --data F)"},
    {"pipeline", kl_cmd_pipeline, "train, evaluate, gate, register, promote (run PIPELINE.yaml)"},
    {"gates", kl_cmd_gates, "run validation gates on a model (--model M --data F --config G)"},
    {"approve", kl_cmd_approve, "sign off a model version and promote it (NAME VERSION --by WHO)"},
    {"rollback", kl_cmd_rollback, "move a model's champion alias back to previous (NAME)"},
    {"serve", kl_cmd_serve, "serve models over gRPC + HTTP, Open Inference Protocol (--model N=B)"},
    {"infer", kl_cmd_infer, "score a file on an inference server (--url H:P --model N --input F)"},
    {"loadgen", kl_cmd_loadgen, "closed-loop load on an inference server (--url H:P --model N)"},
    {"monitor", kl_cmd_monitor, "drift of logged predictions (report --log FILE --model BUNDLE)"},
    {"feedback", kl_cmd_feedback, "send true labels by request id to a server (FILE --url URL)"},
};

static void usage(FILE *f) {
    fprintf(f, "kiln %s — train, validate, serve and monitor models\n\n", KILN_VERSION);
    fprintf(f, "usage: kiln <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun `kiln <command> --help` for a command's options.\n");
}

int kl_cli_fail(const char *what) {
    fprintf(stderr, "kiln %s: %s\n", what, kl_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("kiln %s\n", KILN_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
