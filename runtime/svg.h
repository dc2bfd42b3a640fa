/* svg.h — the frame every kiln chart shares (evaluation reports, drift reports): an SVG document
 * written into memory, a white page with a centred title, and XML-safe text. */
#ifndef KL_SVG_H
#define KL_SVG_H

#include <stddef.h>
#include <stdio.h>

/* Writes s as XML character data: <, >, &, " and ' escaped; control characters other than tab
 * and newline (not allowed in XML 1.0) dropped. */
void kl_svg_text(FILE *f, const char *s);

/* Opens an in-memory SVG of w x h pixels with title on top; NULL without memory. *text and
 * *len are set by kl_svg_end. */
FILE *kl_svg_begin(char **text, size_t *len, double w, double h, const char *title);

/* Closes the document: returns the text (the caller frees it), or NULL on failure. */
char *kl_svg_end(FILE *f, char **text);

#endif
