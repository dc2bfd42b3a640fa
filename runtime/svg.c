/* svg.c — the shared SVG frame of svg.h. */
#include "runtime/svg.h"

#include <stdlib.h>

void kl_svg_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n') fputc(*s, f);
        }
    }
}

FILE *kl_svg_begin(char **text, size_t *len, double w, double h, const char *title) {
    FILE *f = open_memstream(text, len);
    if (!f) return NULL;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%.0f\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">",
            w, h, w, h, w / 2);
    kl_svg_text(f, title);
    fputs("</text>\n", f);
    return f;
}

/* open_memstream sets *text only at fclose, so it is read after. */
char *kl_svg_end(FILE *f, char **text) {
    fputs("</svg>\n", f);
    if (fclose(f)) {
        free(*text);
        return NULL;
    }
    return *text;
}
