/* dashboard.h — the monitoring page GET /dashboard serves (serving/http_server.c).
 *
 * The page is serving/dashboard.html, kept as an ordinary file to edit and embedded in the
 * binary at build time (CMakeLists.txt runs cmake/embed_bytes.cmake on it), so a server needs no
 * files beside it. It is self-contained (inline CSS and JS, nothing fetched from another host):
 * its script polls /metrics and /alerts on the same server and redraws one card per model
 * version. Nothing here runs in C; this header only names the bytes.
 */
#ifndef KL_DASHBOARD_H
#define KL_DASHBOARD_H

/* The page's bytes, kl_dashboard_html_len of them, followed by a NUL (not counted). */
extern const unsigned char kl_dashboard_html[];
extern const unsigned long kl_dashboard_html_len;

#endif
