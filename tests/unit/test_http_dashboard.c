/* test_http_dashboard.c — GET /alerts and GET /dashboard of the HTTP front end, on loopback.
 *
 * `kiln serve` without --alerts leaves the alerts callback NULL, so the integration tests only
 * see the 404; here a server runs with callbacks of the test's own: one that answers JSON (200,
 * passed through unchanged), one that fails (500 with its kl_errmsg) and one that "succeeds"
 * without JSON (500, never a crash). /dashboard must answer the embedded page byte for byte,
 * with its headers; wrong methods get 405 with Allow. The manager serves no model: these routes
 * need none. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "serving/dashboard.h"   /* kl_dashboard_html: what /dashboard must answer */
#include "serving/http_server.h" /* the server under test */

#define ALERTS_JSON "{\"alerts\":[{\"rule\":\"InputDrift\",\"state\":\"firing\"}]}"

/* One answer, split into its parts (the body malloc'd, NUL-terminated). */
typedef struct {
    int status;
    char headers[4096];
    char *body;
    size_t body_len;
} answer;

/* Sends "METHOD PATH HTTP/1.0" to 127.0.0.1:port and reads the answer to the end. */
static void request(int port, const char *method, const char *path, answer *a) {
    memset(a, 0, sizeof *a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = 0, cap = 1 << 16;
    char *raw = malloc(cap + 1);
    assert_non_null(raw);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            raw = realloc(raw, cap + 1);
            assert_non_null(raw);
        }
        ssize_t got = read(fd, raw + len, cap - len);
        assert_true(got >= 0);
        if (got == 0) break;
        len += (size_t)got;
    }
    close(fd);
    raw[len] = '\0';
    assert_int_equal(sscanf(raw, "HTTP/1.%*d %d", &a->status), 1);
    char *end = strstr(raw, "\r\n\r\n");
    assert_non_null(end);
    size_t hl = (size_t)(end - raw);
    assert_true(hl < sizeof a->headers);
    memcpy(a->headers, raw, hl);
    a->body_len = len - hl - 4;
    a->body = malloc(a->body_len + 1);
    assert_non_null(a->body);
    memcpy(a->body, end + 4, a->body_len);
    a->body[a->body_len] = '\0';
    free(raw);
}

/* The value of header name (case-insensitive) in a, or "" (a static copy). */
static const char *header(const answer *a, const char *name) {
    static char v[512];
    v[0] = '\0';
    size_t n = strlen(name);
    for (const char *p = a->headers; (p = strstr(p, "\r\n")) != NULL;) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ')
                p++;
            size_t k = strcspn(p, "\r\n");
            if (k >= sizeof v) k = sizeof v - 1;
            memcpy(v, p, k);
            v[k] = '\0';
            break;
        }
    }
    return v;
}

static int calls; /* how many times a callback ran */

static kl_status alerts_ok(void *ctx, char **json) {
    calls++;
    *json = strdup((const char *)ctx);
    return *json ? KL_OK : kl_seterr(KL_ENOMEM, "out of memory");
}

static kl_status alerts_fail(void *ctx, char **json) {
    (void)ctx, (void)json;
    calls++;
    return kl_seterr(KL_EIO, "alerts: evaluation lock timed out");
}

static kl_status alerts_nothing(void *ctx, char **json) {
    (void)ctx, (void)json;
    calls++;
    return KL_OK;
}

/* A manager with no models and an HTTP server on a free port with these alert callbacks. */
typedef struct {
    kl_model_manager *m;
    kl_http_server *s;
    int port;
} fixture;

static void start(fixture *f, kl_status (*cb)(void *, char **), void *ctx) {
    kl_model_manager_opts mo = kl_model_manager_defaults();
    assert_int_equal(kl_model_manager_create(&mo, &f->m), KL_OK);
    assert_int_equal(kl_model_manager_start(f->m), KL_OK);
    kl_http_server_opts o = kl_http_server_defaults();
    assert_null(o.alerts_json); /* no rules unless the caller sets them */
    o.port = 0;
    o.threads = 1;
    o.alerts_json = cb;
    o.alerts_ctx = ctx;
    if (kl_http_server_start(&o, f->m, &f->s, &f->port) != KL_OK) fail_msg("%s", kl_errmsg());
}

static void stop(fixture *f) {
    kl_http_server_stop(f->s);
    kl_model_manager_free(f->m);
}

static void test_alerts_routes(void **state) {
    (void)state;
    answer a;
    fixture f;

    start(&f, NULL, NULL);
    request(f.port, "GET", "/alerts", &a);
    assert_int_equal(a.status, 404);
    assert_string_equal(a.body,
                        "{\"error\":\"no alert rules configured (kiln serve --alerts FILE)\"}");
    free(a.body);
    stop(&f);

    calls = 0;
    start(&f, alerts_ok, ALERTS_JSON);
    request(f.port, "GET", "/alerts", &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "Content-Type"), "application/json");
    assert_string_equal(a.body, ALERTS_JSON);
    free(a.body);
    request(f.port, "POST", "/alerts", &a);
    assert_int_equal(a.status, 405);
    assert_string_equal(header(&a, "Allow"), "GET, HEAD");
    free(a.body);
    assert_int_equal(calls, 1); /* a refused method never reaches the callback */
    stop(&f);

    start(&f, alerts_fail, NULL);
    request(f.port, "GET", "/alerts", &a);
    assert_int_equal(a.status, 500);
    assert_non_null(strstr(a.body, "alerts: evaluation lock timed out"));
    free(a.body);
    stop(&f);

    start(&f, alerts_nothing, NULL);
    request(f.port, "GET", "/alerts", &a);
    assert_int_equal(a.status, 500);
    assert_non_null(strstr(a.body, "\"error\""));
    free(a.body);
    request(f.port, "GET", "/v2/health/live", &a); /* and the server still answers */
    assert_int_equal(a.status, 200);
    free(a.body);
    stop(&f);
}

static void test_dashboard_route(void **state) {
    (void)state;
    fixture f;
    start(&f, NULL, NULL);
    answer a;
    request(f.port, "GET", "/dashboard", &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
    assert_string_equal(header(&a, "Cache-Control"), "no-store");
    assert_non_null(strstr(header(&a, "Content-Security-Policy"), "connect-src 'self'"));
    assert_int_equal(a.body_len, kl_dashboard_html_len);
    assert_memory_equal(a.body, kl_dashboard_html, kl_dashboard_html_len);
    assert_int_equal(kl_dashboard_html[kl_dashboard_html_len], '\0');
    assert_int_equal(strncasecmp(a.body, "<!doctype html>", 15), 0);
    free(a.body);

    request(f.port, "HEAD", "/dashboard", &a);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 0);
    free(a.body);

    request(f.port, "PUT", "/dashboard", &a);
    assert_int_equal(a.status, 405);
    assert_string_equal(header(&a, "Allow"), "GET, HEAD");
    free(a.body);

    request(f.port, "GET", "/dashboard/extra", &a);
    assert_int_equal(a.status, 404);
    free(a.body);
    stop(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alerts_routes),
        cmocka_unit_test(test_dashboard_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
