/* db_text.h — text helpers shared by kiln's database clients (data/ingest.c and the prediction
 * sink): connection URIs shown without their password, server messages on one line. */
#ifndef KL_DB_TEXT_H
#define KL_DB_TEXT_H

/* A copy of a libpq/SQLite URI fit for messages: user:SECRET@ and password=SECRET become ***.
 * malloc'd (caller frees), or NULL when out of memory. */
char *kl_db_hide_password(const char *uri);

/* Puts a libpq/SQLite message on one line, in place: its line breaks (and the blanks after
 * them) become one space, and a trailing newline goes. */
void kl_db_one_line(char *s);

#endif
