/* reflection.c — server reflection answered from an embedded FileDescriptorSet (see
 * reflection.h). The descriptors are read with a minimal protobuf wire reader: only the name
 * fields and the nested declarations of descriptor.proto are looked at, everything else is
 * skipped, so no descriptor.proto code is generated or linked. */
#include "serving/reflection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/reflection.pb-c.h" /* grpc.reflection.v1 messages (v1alpha is the same wire) */

/* Field numbers from google/protobuf/descriptor.proto. */
enum {
    SET_FILE = 1,        /* FileDescriptorSet.file */
    FILE_NAME = 1,       /* FileDescriptorProto.name */
    FILE_PACKAGE = 2,    /* .package */
    FILE_DEPENDENCY = 3, /* .dependency (repeated string) */
    FILE_MESSAGE = 4,    /* .message_type */
    FILE_ENUM = 5,       /* .enum_type */
    FILE_SERVICE = 6,    /* .service */
    FILE_EXTENSION = 7,  /* .extension */
    MSG_NAME = 1,        /* DescriptorProto.name */
    MSG_FIELD = 2,       /* .field */
    MSG_NESTED = 3,      /* .nested_type */
    MSG_ENUM = 4,        /* .enum_type */
    MSG_EXTENSION = 6,   /* .extension */
    MSG_ONEOF = 8,       /* .oneof_decl */
    ENUM_VALUE = 2,      /* EnumDescriptorProto.value */
    SERVICE_METHOD = 2,  /* ServiceDescriptorProto.method */
    NAME = 1,            /* .name of fields, oneofs, enum values, methods, services, enums */
    MAX_DEPTH = 32,      /* nesting of messages accepted */
    MAX_FILES = 1024,    /* files accepted in one set */
    WIRE_VARINT = 0,     /* wire types */
    WIRE_I64 = 1,
    WIRE_LEN = 2,
    WIRE_I32 = 5,
};

typedef struct {
    const uint8_t *data; /* the serialized FileDescriptorProto (points into the set) */
    size_t len;          /* its bytes */
    char *name;          /* "proto/grpc_predict_v2.proto", owned */
    int *deps;           /* indices of the files it imports that the set holds, owned */
    size_t n_deps;       /* entries in deps */
} refl_file;

typedef struct {
    char *name;     /* fully qualified, owned */
    int file;       /* index of the defining file */
    int is_message; /* whether it names a message type */
} refl_sym;

struct kl_reflection {
    refl_file *files;   /* the set's files, in order */
    size_t n_files;     /* entries in files */
    refl_sym *syms;     /* every symbol, sorted by name after create */
    size_t n_syms;      /* entries in syms */
    size_t cap_syms;    /* allocated entries */
    char **services;    /* service names (point into syms' names), in file order */
    size_t n_services;  /* entries in services */
    size_t cap_service; /* allocated entries */
};

/* --- a minimal protobuf wire reader ----------------------------------------------------------- */

typedef struct {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last */
} wire;

static int read_varint(wire *w, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end) return -1;
        uint8_t b = *w->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads the next field. Returns 1 with its number and, for length-delimited fields, its
 * payload in *data and *len (other wire types are skipped and give *data = NULL); 0 at the end;
 * -1 on malformed bytes (groups included: descriptors never use them). */
static int wire_next(wire *w, uint32_t *num, const uint8_t **data, size_t *len) {
    if (w->p >= w->end) return 0;
    uint64_t key, v;
    if (read_varint(w, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) return -1;
    *num = (uint32_t)(key >> 3);
    *data = NULL;
    *len = 0;
    switch (key & 7) {
    case WIRE_VARINT:
        return read_varint(w, &v) ? -1 : 1;
    case WIRE_I64:
        if (w->end - w->p < 8) return -1;
        w->p += 8;
        return 1;
    case WIRE_I32:
        if (w->end - w->p < 4) return -1;
        w->p += 4;
        return 1;
    case WIRE_LEN:
        if (read_varint(w, &v) || v > (uint64_t)(w->end - w->p)) return -1;
        *data = w->p;
        *len = (size_t)v;
        w->p += v;
        return 1;
    default:
        return -1;
    }
}

/* The last string in field `field` of message d[0..n), malloc'd ("" when absent); NULL on
 * malformed bytes or no memory. */
static char *string_field(const uint8_t *d, size_t n, uint32_t field) {
    wire w = {d, d + n};
    const uint8_t *s = (const uint8_t *)"", *data;
    size_t slen = 0, len;
    uint32_t num;
    int rc;
    while ((rc = wire_next(&w, &num, &data, &len)) > 0)
        if (num == field && data) s = data, slen = len;
    if (rc < 0 || memchr(s, 0, slen)) return NULL;
    char *out = malloc(slen + 1);
    if (!out) return NULL;
    memcpy(out, s, slen);
    out[slen] = 0;
    return out;
}

/* --- indexing --------------------------------------------------------------------------------- */

/* Joins scope and name with a dot ("" scope: the name alone); malloc'd or NULL. */
static char *qualify(const char *scope, const char *name) {
    size_t a = strlen(scope), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    if (a) {
        memcpy(s, scope, a);
        s[a++] = '.';
    }
    memcpy(s + a, name, b + 1);
    return s;
}

/* Adds symbol scope.name of file; takes nothing. Returns the stored name or NULL (no memory, or
 * an empty name: malformed). */
static const char *add_sym(kl_reflection *r, const char *scope, const char *name, int file,
                           int is_message) {
    if (!*name) return NULL;
    if (r->n_syms == r->cap_syms) {
        size_t cap = r->cap_syms ? 2 * r->cap_syms : 256;
        refl_sym *s = realloc(r->syms, cap * sizeof *s);
        if (!s) return NULL;
        r->syms = s;
        r->cap_syms = cap;
    }
    char *full = qualify(scope, name);
    if (!full) return NULL;
    r->syms[r->n_syms++] = (refl_sym){full, file, is_message};
    return full;
}

/* Adds the symbol named by field NAME of the message d[0..n) under scope. */
static const char *add_named(kl_reflection *r, const char *scope, const uint8_t *d, size_t n,
                             int file, int is_message) {
    char *name = string_field(d, n, NAME);
    if (!name) return NULL;
    const char *full = add_sym(r, scope, name, file, is_message);
    free(name);
    return full;
}

/* An enum: its name under scope, its values in scope too (protobuf scopes enum values beside
 * their enum, not inside it). */
static kl_status walk_enum(kl_reflection *r, const char *scope, const uint8_t *d, size_t n,
                           int file) {
    if (!add_named(r, scope, d, n, file, 0))
        return kl_seterr(KL_EFORMAT, "enum in \"%s\": no name", scope);
    wire w = {d, d + n};
    const uint8_t *data;
    size_t len;
    uint32_t num;
    int rc;
    while ((rc = wire_next(&w, &num, &data, &len)) > 0)
        if (num == ENUM_VALUE && data && !add_named(r, scope, data, len, file, 0))
            return kl_seterr(KL_EFORMAT, "enum value in \"%s\": no name", scope);
    return rc < 0 ? kl_seterr(KL_EFORMAT, "enum in \"%s\": malformed bytes", scope) : KL_OK;
}

/* A message: its name under scope, then its fields, oneofs, extensions, enums and nested
 * messages under its own name. */
static kl_status walk_message(kl_reflection *r, const char *scope, const uint8_t *d, size_t n,
                              int file, int depth) {
    if (depth > MAX_DEPTH)
        return kl_seterr(KL_EFORMAT, "messages nested too deep in \"%s\"", scope);
    const char *full = add_named(r, scope, d, n, file, 1);
    if (!full) return kl_seterr(KL_EFORMAT, "message in \"%s\": no name", scope);
    wire w = {d, d + n};
    const uint8_t *data;
    size_t len;
    uint32_t num;
    int rc;
    while ((rc = wire_next(&w, &num, &data, &len)) > 0) {
        if (!data) continue;
        if (num == MSG_FIELD || num == MSG_EXTENSION || num == MSG_ONEOF) {
            if (!add_named(r, full, data, len, file, 0))
                return kl_seterr(KL_EFORMAT, "field of \"%s\": no name", full);
        } else if (num == MSG_NESTED) {
            KL_TRY(walk_message(r, full, data, len, file, depth + 1));
        } else if (num == MSG_ENUM) {
            KL_TRY(walk_enum(r, full, data, len, file));
        }
    }
    return rc < 0 ? kl_seterr(KL_EFORMAT, "message \"%s\": malformed bytes", full) : KL_OK;
}

/* A service and its methods. */
static kl_status walk_service(kl_reflection *r, const char *scope, const uint8_t *d, size_t n,
                              int file) {
    const char *full = add_named(r, scope, d, n, file, 0);
    if (!full) return kl_seterr(KL_EFORMAT, "service in package \"%s\": no name", scope);
    if (r->n_services == r->cap_service) {
        size_t cap = r->cap_service ? 2 * r->cap_service : 8;
        char **s = realloc(r->services, cap * sizeof *s);
        if (!s) return kl_seterr(KL_ENOMEM, "out of memory");
        r->services = s;
        r->cap_service = cap;
    }
    r->services[r->n_services++] = (char *)full;
    wire w = {d, d + n};
    const uint8_t *data;
    size_t len;
    uint32_t num;
    int rc;
    while ((rc = wire_next(&w, &num, &data, &len)) > 0)
        if (num == SERVICE_METHOD && data && !add_named(r, full, data, len, file, 0))
            return kl_seterr(KL_EFORMAT, "method of \"%s\": no name", full);
    return rc < 0 ? kl_seterr(KL_EFORMAT, "service \"%s\": malformed bytes", full) : KL_OK;
}

/* One FileDescriptorProto: its package's top-level declarations. Dependencies are resolved once
 * every file is known. */
static kl_status walk_file(kl_reflection *r, int file) {
    refl_file *f = &r->files[file];
    char *package = string_field(f->data, f->len, FILE_PACKAGE);
    if (!package) return kl_seterr(KL_EFORMAT, "malformed package");
    wire w = {f->data, f->data + f->len};
    const uint8_t *data;
    size_t len;
    uint32_t num;
    int rc;
    kl_status st = KL_OK;
    while (st == KL_OK && (rc = wire_next(&w, &num, &data, &len)) > 0) {
        if (!data) continue;
        if (num == FILE_MESSAGE)
            st = walk_message(r, package, data, len, file, 0);
        else if (num == FILE_ENUM)
            st = walk_enum(r, package, data, len, file);
        else if (num == FILE_SERVICE)
            st = walk_service(r, package, data, len, file);
        else if (num == FILE_EXTENSION && !add_named(r, package, data, len, file, 0))
            st = kl_seterr(KL_EFORMAT, "extension in package \"%s\": no name", package);
    }
    if (st == KL_OK && rc < 0) st = kl_seterr(KL_EFORMAT, "malformed bytes");
    free(package);
    return st;
}

/* Resolves file i's imports to indices (imports the set lacks are left out). */
static kl_status link_deps(kl_reflection *r, size_t i) {
    refl_file *f = &r->files[i];
    wire w = {f->data, f->data + f->len};
    const uint8_t *data;
    size_t len;
    uint32_t num;
    int rc;
    while ((rc = wire_next(&w, &num, &data, &len)) > 0) {
        if (num != FILE_DEPENDENCY || !data) continue;
        for (size_t j = 0; j < r->n_files; j++) {
            if (j == i || strlen(r->files[j].name) != len || memcmp(r->files[j].name, data, len))
                continue;
            int *d = realloc(f->deps, (f->n_deps + 1) * sizeof *d);
            if (!d) return kl_seterr(KL_ENOMEM, "out of memory");
            f->deps = d;
            f->deps[f->n_deps++] = (int)j;
            break;
        }
    }
    return rc < 0 ? kl_seterr(KL_EFORMAT, "malformed dependency list") : KL_OK;
}

static int sym_cmp(const void *a, const void *b) {
    return strcmp(((const refl_sym *)a)->name, ((const refl_sym *)b)->name);
}

kl_status kl_reflection_create(const uint8_t *set, size_t len, kl_reflection **out) {
    *out = NULL;
    kl_reflection *r = calloc(1, sizeof *r);
    if (!r) return kl_seterr(KL_ENOMEM, "reflection: out of memory");
    kl_status st = KL_OK;
    wire w = {set, set + len};
    const uint8_t *data;
    size_t flen;
    uint32_t num;
    int rc;
    while (st == KL_OK && (rc = wire_next(&w, &num, &data, &flen)) > 0) {
        if (num != SET_FILE || !data) continue;
        if (r->n_files == MAX_FILES) {
            st = kl_seterr(KL_EFORMAT, "more than %d files", MAX_FILES);
            break;
        }
        refl_file *f = realloc(r->files, (r->n_files + 1) * sizeof *f);
        if (!f) {
            st = kl_seterr(KL_ENOMEM, "out of memory");
            break;
        }
        r->files = f;
        f = &r->files[r->n_files];
        *f = (refl_file){data, flen, string_field(data, flen, FILE_NAME), NULL, 0};
        if (!f->name || !*f->name) {
            free(f->name);
            st = kl_seterr(KL_EFORMAT, "file %zu: no name", r->n_files);
            break;
        }
        r->n_files++;
        st = walk_file(r, (int)r->n_files - 1);
        if (st != KL_OK) kl_preferr(st, "file \"%s\"", f->name);
    }
    if (st == KL_OK && rc < 0) st = kl_seterr(KL_EFORMAT, "malformed bytes");
    for (size_t i = 0; st == KL_OK && i < r->n_files; i++)
        if ((st = link_deps(r, i)) != KL_OK) kl_preferr(st, "file \"%s\"", r->files[i].name);
    if (st != KL_OK) {
        kl_reflection_free(r);
        return kl_preferr(st, "reflection: descriptor set (%zu bytes)", len);
    }
    /* Sorted for lookups; a symbol defined twice keeps its first file (a stable merge would be
     * needed to guarantee which, but well-formed sets define each symbol once). */
    if (r->n_syms) qsort(r->syms, r->n_syms, sizeof *r->syms, sym_cmp);
    *out = r;
    return KL_OK;
}

void kl_reflection_free(kl_reflection *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_files; i++) {
        free(r->files[i].name);
        free(r->files[i].deps);
    }
    for (size_t i = 0; i < r->n_syms; i++)
        free(r->syms[i].name);
    free(r->files);
    free(r->syms);
    free(r->services);
    free(r);
}

size_t kl_reflection_service_count(const kl_reflection *r) {
    return r->n_services;
}

const char *kl_reflection_service(const kl_reflection *r, size_t i) {
    return i < r->n_services ? r->services[i] : NULL;
}

size_t kl_reflection_file_count(const kl_reflection *r) {
    return r->n_files;
}

const char *kl_reflection_file_name(const kl_reflection *r, size_t i) {
    return i < r->n_files ? r->files[i].name : NULL;
}

int kl_reflection_find_file(const kl_reflection *r, const char *name) {
    for (size_t i = 0; name && i < r->n_files; i++)
        if (!strcmp(r->files[i].name, name)) return (int)i;
    return -1;
}

static const refl_sym *find_sym(const kl_reflection *r, const char *symbol) {
    if (!symbol || !r->n_syms) return NULL;
    /* A leading dot ("".inference.ModelInferRequest", as type_name fields write it) is allowed. */
    refl_sym key = {(char *)(symbol[0] == '.' ? symbol + 1 : symbol), 0, 0};
    return bsearch(&key, r->syms, r->n_syms, sizeof *r->syms, sym_cmp);
}

int kl_reflection_find_symbol(const kl_reflection *r, const char *symbol) {
    const refl_sym *s = find_sym(r, symbol);
    return s ? s->file : -1;
}

int kl_reflection_is_message(const kl_reflection *r, const char *symbol) {
    const refl_sym *s = find_sym(r, symbol);
    return s && s->is_message;
}

/* Depth-first: i, then each import not yet listed. */
static void closure(const kl_reflection *r, int i, int *idx, size_t cap, size_t *n,
                    unsigned char *seen) {
    if (seen[i]) return;
    seen[i] = 1;
    if (*n < cap) idx[(*n)++] = i;
    for (size_t k = 0; k < r->files[i].n_deps; k++)
        closure(r, r->files[i].deps[k], idx, cap, n, seen);
}

size_t kl_reflection_file_closure(const kl_reflection *r, int i, int *idx, size_t cap) {
    if (i < 0 || (size_t)i >= r->n_files) return 0;
    unsigned char seen[MAX_FILES] = {0};
    size_t n = 0;
    closure(r, i, idx, cap, &n, seen);
    return n;
}

/* --- answering -------------------------------------------------------------------------------- */

kl_grpc_code kl_reflection_answer(const kl_reflection *r, const uint8_t *req, size_t len,
                                  uint8_t **resp, size_t *resp_len) {
    *resp = NULL;
    *resp_len = 0;
    Grpc__Reflection__V1__ServerReflectionRequest *q =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, len, req);
    if (!q) {
        kl_seterr(KL_EFORMAT, "malformed ServerReflectionRequest (%zu bytes do not parse)", len);
        return KL_GRPC_INVALID_ARGUMENT;
    }
    Grpc__Reflection__V1__ServerReflectionResponse a =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1__FileDescriptorResponse fd =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1__ListServiceResponse ls =
        GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ExtensionNumberResponse en =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    Grpc__Reflection__V1__ErrorResponse err = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1__ServiceResponse *svc = NULL, **svcp = NULL;
    ProtobufCBinaryData files[MAX_FILES > 64 ? 64 : MAX_FILES];
    char msg[512] = "";
    a.valid_host = q->host ? q->host : "";
    a.original_request = q;
    int file = -1;
    const char *asked = "";
    switch (q->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        svc = calloc(r->n_services ? r->n_services : 1, sizeof *svc);
        svcp = calloc(r->n_services ? r->n_services : 1, sizeof *svcp);
        if (!svc || !svcp) break;
        for (size_t i = 0; i < r->n_services; i++) {
            grpc__reflection__v1__service_response__init(&svc[i]);
            svc[i].name = r->services[i];
            svcp[i] = &svc[i];
        }
        ls.n_service = r->n_services;
        ls.service = svcp;
        a.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        a.list_services_response = &ls;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        asked = q->file_by_filename ? q->file_by_filename : "";
        file = kl_reflection_find_file(r, asked);
        if (file < 0) snprintf(msg, sizeof msg, "file \"%.400s\" not found", asked);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        asked = q->file_containing_symbol ? q->file_containing_symbol : "";
        file = kl_reflection_find_symbol(r, asked);
        if (file < 0) snprintf(msg, sizeof msg, "symbol \"%.400s\" not found", asked);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        asked = q->all_extension_numbers_of_type ? q->all_extension_numbers_of_type : "";
        if (kl_reflection_is_message(r, asked)) {
            en.base_type_name = (char *)asked; /* kiln's protos declare no extensions */
            a.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
            a.all_extension_numbers_response = &en;
        } else {
            snprintf(msg, sizeof msg, "message type \"%.400s\" not found", asked);
        }
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        snprintf(msg, sizeof msg, "extension %d of \"%.400s\" not found",
                 q->file_containing_extension ? q->file_containing_extension->extension_number : 0,
                 q->file_containing_extension && q->file_containing_extension->containing_type
                     ? q->file_containing_extension->containing_type
                     : "");
        break;
    default:
        err.error_code = KL_GRPC_INVALID_ARGUMENT;
        err.error_message = "ServerReflectionRequest asks nothing (no message_request set)";
        a.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        a.error_response = &err;
        break;
    }
    if (file >= 0) {
        int idx[sizeof files / sizeof files[0]];
        size_t n = kl_reflection_file_closure(r, file, idx, sizeof idx / sizeof idx[0]);
        for (size_t i = 0; i < n; i++) {
            files[i].data = (uint8_t *)r->files[idx[i]].data;
            files[i].len = r->files[idx[i]].len;
        }
        fd.n_file_descriptor_proto = n;
        fd.file_descriptor_proto = files;
        a.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        a.file_descriptor_response = &fd;
    } else if (*msg) {
        err.error_code = KL_GRPC_NOT_FOUND;
        err.error_message = msg;
        a.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        a.error_response = &err;
    }
    kl_grpc_code code = KL_GRPC_OK;
    if (a.message_response_case ==
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
        kl_seterr(KL_ENOMEM, "ServerReflectionResponse: out of memory");
        code = KL_GRPC_RESOURCE_EXHAUSTED;
    } else {
        size_t n = grpc__reflection__v1__server_reflection_response__get_packed_size(&a);
        *resp = malloc(n ? n : 1);
        if (*resp) {
            *resp_len = grpc__reflection__v1__server_reflection_response__pack(&a, *resp);
        } else {
            kl_seterr(KL_ENOMEM, "ServerReflectionResponse: %zu bytes: out of memory", n);
            code = KL_GRPC_RESOURCE_EXHAUSTED;
        }
    }
    free(svc);
    free(svcp);
    grpc__reflection__v1__server_reflection_request__free_unpacked(q, NULL);
    return code;
}
