/* yaml_doc.h — loading a YAML text into a libyaml document, with kiln's error message, for the
 * parsers of kiln's YAML files (gates, data checks, alert rules, pipelines, MLmodel). */
#ifndef KL_YAML_DOC_H
#define KL_YAML_DOC_H

#include <stddef.h>
#include <yaml.h>

#include "runtime/status.h"

/* Loads the first document of text (len bytes) into *doc; free it with yaml_document_delete.
 * A syntax error is KL_EFORMAT "YAML error at line N: <libyaml's problem>" (the caller prefixes
 * what the text is). */
kl_status kl_yaml_load(const char *text, size_t len, yaml_document_t *doc);

/* A scalar node's text, or NULL for any other node (or NULL). */
const char *kl_yaml_scalar(const yaml_node_t *n);

#endif
