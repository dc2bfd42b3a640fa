/* db_text.c — URIs without passwords, messages on one line (db_text.h). */
#include "data/db_text.h"

#include <stdlib.h>
#include <string.h>

/* Appends n bytes of s at *w. */
static void put(char **w, const char *s, size_t n) {
    memcpy(*w, s, n);
    *w += n;
}

char *kl_db_hide_password(const char *uri) {
    /* Each replacement writes at most "***" where at least one byte was: 3 bytes per byte is
     * an upper bound, with room for the terminator. */
    char *out = malloc(3 * strlen(uri) + 16), *w = out;
    if (!out) return NULL;
    const char *scheme_end = strstr(uri, "://");
    size_t auth = scheme_end ? (size_t)(scheme_end - uri) + 3 : 0;
    size_t auth_end = auth + strcspn(uri + auth, "/?");
    size_t at = 0, colon = 0;
    for (size_t i = auth; i < auth_end; i++)
        if (uri[i] == '@') at = i;
    for (size_t i = auth; i < at && !colon; i++)
        if (uri[i] == ':') colon = i;
    if (colon) {
        put(&w, uri, colon + 1);
        put(&w, "***", 3);
        uri += at;
    }
    const char *q = strchr(uri, '?');
    if (!q) {
        put(&w, uri, strlen(uri) + 1);
        return out;
    }
    put(&w, uri, (size_t)(q - uri));
    for (const char *item = q + 1; *item;) {
        size_t n = strcspn(item, "&");
        put(&w, item == q + 1 ? "?" : "&", 1);
        if (!strncmp(item, "password=", 9))
            put(&w, "password=***", 12);
        else
            put(&w, item, n);
        item += n;
        if (*item == '&') item++;
    }
    *w = '\0';
    return out;
}

void kl_db_one_line(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '\n' || *r == '\r') {
            while (r[1] == '\t' || r[1] == ' ' || r[1] == '\n' || r[1] == '\r')
                r++;
            if (r[1]) *w++ = ' ';
            continue;
        }
        *w++ = *r;
    }
    *w = '\0';
}
