/* fileio.h — whole-file reads, atomic writes and directory creation, for the bundle formats.
 *
 * Messages name the path; callers prefix what the file is for.
 */
#ifndef KL_FILEIO_H
#define KL_FILEIO_H

#include <stddef.h>

#include "runtime/status.h"

/* Reads the whole file into a malloc'd buffer (NUL-terminated one byte past *len, so text can
 * be parsed in place). The caller frees *data. Refuses files larger than max_len bytes. */
kl_status kl_file_read(const char *path, size_t max_len, char **data, size_t *len);

/* Writes len bytes to path through "path.tmp" and a rename, so a reader (a serving process
 * reloading a bundle) never sees half a file. */
kl_status kl_file_write_atomic(const char *path, const void *data, size_t len);

/* Creates dir and its missing parents (mode 0755); an existing directory is fine. */
kl_status kl_file_mkdirs(const char *dir);

/* Writes the NUL-terminated text to dir/name with kl_file_write_atomic and frees it (it takes
 * ownership; NULL, a failed build of the text, is KL_ENOMEM naming the file). Errors name the
 * path. For report writers that build each file's text and write it out. */
kl_status kl_file_write_text_in(const char *dir, const char *name, char *text);

#endif
