/* test_mlflow.c — the MLflow client's offline behaviour: tracking URIs and credentials, URL
 * escaping, refusals made before any request (bad URIs, conflicting params, paths that leave
 * the artifact root), the message for a server that cannot be reached, and plain paths passing
 * through kl_model_uri_resolve. Everything that talks to a server is tested against a real
 * `mlflow server` in tests/integration/test_mlflow_client.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tracking/http.h"
#include "tracking/mlflow.h"
#include "tracking/model_uri.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

/* Port 9 (discard) on loopback: nothing listens there in a test environment. */
#define DEAD_URI "http://127.0.0.1:9"

static void clear_env(void) {
    const char *vars[] = {"MLFLOW_TRACKING_URI",
                          "MLFLOW_TRACKING_USERNAME",
                          "MLFLOW_TRACKING_PASSWORD",
                          "MLFLOW_TRACKING_TOKEN",
                          "MLFLOW_TRACKING_INSECURE_TLS",
                          "MLFLOW_TRACKING_SERVER_CERT_PATH",
                          "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                          "MLFLOW_HTTP_REQUEST_TIMEOUT",
                          "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

static kl_mlflow *open_dead(void) {
    kl_mlflow_opts o = {.uri = DEAD_URI, .max_retries = -1, .timeout_s = 5};
    kl_mlflow *c = NULL;
    assert_int_equal(kl_mlflow_open(&o, &c), KL_OK);
    return c;
}

static void test_escape(void **state) {
    (void)state;
    char out[64] = "x=";
    assert_int_equal(kl_http_escape(out, sizeof out, "a b/\xc3\xbc?&", 0), 0);
    assert_string_equal(out, "x=a%20b%2F%C3%BC%3F%26");
    char path[64] = "";
    assert_int_equal(kl_http_escape(path, sizeof path, "1/run/artifacts/a b.txt", 1), 0);
    assert_string_equal(path, "1/run/artifacts/a%20b.txt");
    char tiny[6] = "";
    assert_int_equal(kl_http_escape(tiny, sizeof tiny, "a b c", 0), -1);
}

static void test_uri_credentials_are_stripped(void **state) {
    (void)state;
    clear_env();
    kl_mlflow_opts o = {.uri = "http://alice:p%40ss@127.0.0.1:5000/prefix/"};
    kl_mlflow *c = NULL;
    assert_int_equal(kl_mlflow_open(&o, &c), KL_OK);
    assert_string_equal(kl_mlflow_uri(c), "http://127.0.0.1:5000/prefix");
    assert_int_equal(kl_mlflow_last_http_status(c), 0);
    kl_mlflow_close(c);
    setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com", 1);
    assert_int_equal(kl_mlflow_open(NULL, &c), KL_OK);
    assert_string_equal(kl_mlflow_uri(c), "https://mlflow.example.com");
    kl_mlflow_close(c);
    clear_env();
}

static void test_bad_uris(void **state) {
    (void)state;
    clear_env();
    kl_mlflow *c = NULL;
    assert_int_equal(kl_mlflow_open(NULL, &c), KL_ENOTFOUND);
    assert_msg_has("MLFLOW_TRACKING_URI");
    assert_null(c);
    const char *bad[] = {"file:///tmp/mlruns", "databricks", "sqlite:///mlflow.db"};
    for (int i = 0; i < 3; i++) {
        kl_mlflow_opts o = {.uri = bad[i]};
        assert_int_equal(kl_mlflow_open(&o, &c), KL_EUNSUPPORTED);
        assert_msg_has(bad[i]);
    }
    kl_mlflow_opts o = {.uri = "http:///nohost"};
    assert_int_equal(kl_mlflow_open(&o, &c), KL_EINVAL);
}

static void test_tls_settings_conflict(void **state) {
    (void)state;
    clear_env();
    setenv("MLFLOW_TRACKING_INSECURE_TLS", "true", 1);
    setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/ssl/certs/ca-certificates.crt", 1);
    kl_mlflow_opts o = {.uri = "https://127.0.0.1:5000"};
    kl_mlflow *c = NULL;
    assert_int_equal(kl_mlflow_open(&o, &c), KL_EINVAL);
    assert_msg_has("choose one");
    clear_env();
}

static void test_unreachable_server(void **state) {
    (void)state;
    clear_env();
    kl_mlflow *c = open_dead();
    char id[64];
    assert_int_equal(kl_mlflow_experiment(c, "x", id), KL_EIO);
    assert_msg_has("cannot reach MLflow at " DEAD_URI);
    assert_msg_has("GET /api/2.0/mlflow/experiments/get-by-name; 1 try");
    assert_int_equal(kl_mlflow_last_http_status(c), 0);
    kl_mlflow_close(c);
}

static void test_refusals_before_any_request(void **state) {
    (void)state;
    kl_mlflow *c = open_dead();
    kl_kv params[] = {{"lr", "0.1"}, {"lr", "0.2"}};
    assert_int_equal(kl_mlflow_log_batch(c, "r", NULL, 0, params, 2, NULL, 0), KL_EINVAL);
    assert_msg_has("param \"lr\" given twice");
    assert_int_equal(kl_mlflow_log_batch(c, "r", NULL, 0, NULL, 0, NULL, 0), KL_OK);

    assert_int_equal(kl_mlflow_upload_file(c, "s3://bucket/1/r/artifacts", "/etc/hostname", "x"),
                     KL_EUNSUPPORTED);
    assert_msg_has("mlflow-artifacts:/");
    assert_int_equal(
        kl_mlflow_upload_file(c, "mlflow-artifacts:/1/r/artifacts", "/etc/hostname", "../../x"),
        KL_EINVAL);
    assert_msg_has("leaves its root");
    assert_int_equal(kl_mlflow_upload_file(c, "mlflow-artifacts://elsewhere:5000/1/r/artifacts",
                                           "/etc/hostname", "x"),
                     KL_EUNSUPPORTED);
    assert_msg_has("another server");
    assert_int_equal(
        kl_mlflow_upload_file(c, "mlflow-artifacts:/1/r/artifacts", "/nonexistent/file", "x"),
        KL_EIO);
    assert_msg_has("/nonexistent/file");
    assert_int_equal(
        kl_mlflow_upload_dir(c, "mlflow-artifacts:/1/r/artifacts", "/nonexistent", "x"),
        KL_ENOTFOUND);

    char uri[512], version[32];
    assert_int_equal(kl_mlflow_models_uri(c, "models:/", uri, version), KL_EINVAL);
    assert_int_equal(kl_mlflow_models_uri(c, "models:/name/abc", uri, version), KL_EINVAL);
    assert_msg_has("must be a number");
    assert_int_equal(kl_mlflow_models_uri(c, "models:/name@", uri, version), KL_EINVAL);
    assert_int_equal(kl_mlflow_models_uri(c, "runs:/abc/model", uri, version), KL_EINVAL);
    kl_mlflow_close(c);
}

static void test_model_uri_paths_pass_through(void **state) {
    (void)state;
    clear_env();
    char dir[256];
    assert_int_equal(kl_model_uri_resolve("out/model", dir, sizeof dir), KL_OK);
    assert_string_equal(dir, "out/model");
    assert_int_equal(kl_model_uri_resolve("models:/fmnist@champion", dir, sizeof dir),
                     KL_ENOTFOUND);
    assert_msg_has("models:/fmnist@champion");
    assert_msg_has("MLFLOW_TRACKING_URI");

    setenv("KILN_MODEL_CACHE", "/var/cache/kiln-test", 1);
    assert_int_equal(kl_model_uri_cache_dir(dir, sizeof dir), KL_OK);
    assert_string_equal(dir, "/var/cache/kiln-test");
    unsetenv("KILN_MODEL_CACHE");
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    assert_int_equal(kl_model_uri_cache_dir(dir, sizeof dir), KL_OK);
    assert_string_equal(dir, "/xdg/kiln/models");
    unsetenv("XDG_CACHE_HOME");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_uri_credentials_are_stripped),
        cmocka_unit_test(test_bad_uris),
        cmocka_unit_test(test_tls_settings_conflict),
        cmocka_unit_test(test_unreachable_server),
        cmocka_unit_test(test_refusals_before_any_request),
        cmocka_unit_test(test_model_uri_paths_pass_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
