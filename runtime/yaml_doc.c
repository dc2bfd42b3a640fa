/* yaml_doc.c — see yaml_doc.h. */
#include "runtime/yaml_doc.h"

kl_status kl_yaml_load(const char *text, size_t len, yaml_document_t *doc) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return kl_seterr(KL_ENOMEM, "cannot start libyaml");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    kl_status st = KL_OK;
    if (!yaml_parser_load(&parser, doc))
        st = kl_seterr(KL_EFORMAT, "YAML error at line %zu: %s", parser.problem_mark.line + 1,
                       parser.problem ? parser.problem : "unknown");
    yaml_parser_delete(&parser); /* the document lives on its own */
    return st;
}

const char *kl_yaml_scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}
