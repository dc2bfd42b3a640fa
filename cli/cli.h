/* cli.h — the subcommands of the kiln binary. Each takes argc/argv after its own name and
 * returns the process exit code: 0 success, 1 failure (message already printed), 2 usage error. */
#ifndef KL_CLI_H
#define KL_CLI_H

int kl_cmd_train(int argc, char **argv);
int kl_cmd_predict(int argc, char **argv);
int kl_cmd_export_onnx(int argc, char **argv);
int kl_cmd_data(int argc, char **argv);
int kl_cmd_tracking(int argc, char **argv);
int kl_cmd_register(int argc, char **argv);
int kl_cmd_alias(int argc, char **argv);
int kl_cmd_serve(int argc, char **argv);

/* Prints "kiln <what>: <message>" to stderr from the thread's kl_errmsg and returns 1. */
int kl_cli_fail(const char *what);

#endif
