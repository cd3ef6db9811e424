/*
 * llorch-diff extractor: a narrow C ABI over llama.cpp.
 *
 * No llama.cpp or ggml type crosses this boundary: the Rust side sees opaque sessions,
 * plain integers and f32 buffers. Types are ggml type ids (0 = F32, 1 = F16, ...).
 * Functions that fail return a negative value or NULL; llorch_last_error() says why.
 */
#ifndef LLORCH_EXTRACTOR_H
#define LLORCH_EXTRACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llorch_session llorch_session;

typedef struct llorch_options {
    int32_t n_threads;
    /* ggml type id of the KV cache: 0 = F32, 1 = F16, 30 = BF16. */
    int32_t kv_type;
    /* Context length; the prompt plus all decode steps must fit. */
    int32_t n_ctx;
    /* Nonzero: weights go to the CPU backend's repack buffers where it has a layout for them
     * (llama.cpp's default, `use_extra_bufts`); zero: plain CPU buffers (`--no-repack`). */
    int32_t use_repack;
} llorch_options;

typedef struct llorch_model_dims {
    int32_t n_layer;
    int32_t n_embd;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_vocab;
    int32_t n_ctx_train;
} llorch_model_dims;

/* One captured graph node, gathered to a C-contiguous f32 buffer [ne3][ne2][ne1][ne0]. */
typedef struct llorch_capture {
    const char *name;   /* the name it was asked for: the node's, e.g. "Qcur-0", or "src:NAME" */
    const char *op;     /* ggml op name, e.g. "ROPE" */
    int32_t type;       /* ggml type of the node before conversion */
    int64_t ne[4];      /* ggml order: innermost first */
    const float *data;  /* valid until the next decode, clear or free */
} llorch_capture;

const char *llorch_last_error(void);

/* Silences llama.cpp's log unless verbose is true. */
void llorch_set_verbose(bool verbose);
/* For a child process whose stderr a parent reads: the log lines that are not shown are written
 * to stderr as "\x1eL<line>", and a ggml assertion as "\x1eA<message>" (no backtrace) before
 * it aborts. */
void llorch_set_child_log(bool on);

llorch_session *llorch_session_open(const char *model_path, const llorch_options *options);
void llorch_session_free(llorch_session *session);

int llorch_model_dims_get(const llorch_session *session, llorch_model_dims *out);
/* Writes a metadata string value (NUL-terminated); returns its length or -1. */
int32_t llorch_model_meta(const llorch_session *session, const char *key, char *buf, size_t buf_len);

/* Returns the number of tokens written, or -(needed) if cap is too small. */
int32_t llorch_tokenize(const llorch_session *session, const char *text, int32_t text_len,
                        bool add_special, bool parse_special, int32_t *out, int32_t cap);
int32_t llorch_token_to_piece(const llorch_session *session, int32_t token, char *buf, int32_t buf_len);

/* Exact node names to capture (e.g. "attn_norm-3", "cache_k_l3 (view)"); n = 0 captures nothing,
 * n < 0 every F32/F16/BF16/I32 node (a survey of the graph). A name "src:NAME" asks for every node
 * that has the tensor NAME among its sources (for nodes llama.cpp leaves unnamed); such captures
 * carry that "src:NAME" as their name. n < 0 with -n - 1 names captures every node under its own
 * name and, a second time, each node that a "src:NAME" among the names asks for. */
int llorch_capture_names(llorch_session *session, const char *const *names, int32_t n);
/* As llorch_capture_names, each name taken only with the ggml op ops[i] (e.g. "ROPE"; NULL: any
 * op); a name may come several times with different ops. Only these nodes are observed, and
 * every observed node ends a graph compute of its own. */
int llorch_capture_nodes(llorch_session *session, const char *const *names, const char *const *ops,
                         int32_t n);
int32_t llorch_capture_count(const llorch_session *session);
int llorch_capture_get(const llorch_session *session, int32_t index, llorch_capture *out);

/* Evaluates tokens at positions pos0.. of sequence 0, asking for logits at every position. */
int llorch_decode(llorch_session *session, const int32_t *tokens, int32_t n_tokens, int32_t pos0);
/* Logits of output row i of the last decode (n_vocab floats), or NULL. */
const float *llorch_logits(llorch_session *session, int32_t i);

/* ggml's own block codecs, for bit-exact proofs of the Rust ones. */
size_t llorch_ggml_row_size(int32_t type, int64_t n);
int32_t llorch_ggml_blck_size(int32_t type);
int llorch_ggml_dequantize(int32_t type, const void *src, float *dst, int64_t n);
/* The reference quantizer (ggml-quants.c *_ref). Returns bytes written or -1. */
int64_t llorch_ggml_quantize_ref(int32_t type, const float *src, void *dst, int64_t n);
/* The CPU backend's activation quantizer, as a matmul uses it. */
int64_t llorch_ggml_quantize_cpu(int32_t type, const float *src, void *dst, int64_t n);
/* The type a weight of this type takes its activations in (type_traits_cpu.vec_dot_type). */
int32_t llorch_ggml_vec_dot_type(int32_t type);
/* ggml's CPU dot product of a weight row and an activation row already in vec_dot_type. */
int llorch_ggml_vec_dot(int32_t type, int64_t n, const void *weight, const void *activation, float *out);
/* One MUL_MAT through the CPU backend, as a graph computes it: weight [n_out rows of n_in] of
 * `type`, activations [t rows of n_in] f32, out [t rows of n_out]. With use_repack the weight is
 * loaded into the repack buffer when the backend has a layout for it. Returns 1 when the weight
 * was repacked, 0 when not, -1 on error. */
int llorch_ggml_mul_mat(int32_t type, const void *weight, int64_t n_in, int64_t n_out,
                        const float *activations, int64_t t, int32_t n_threads, int32_t use_repack,
                        float *out);

/* llama_model_quantize: rewrites a GGUF with every matrix in the llama_ftype `ftype`
 * (LLAMA_FTYPE_MOSTLY_*), as llama.cpp's quantize tool does (requantizing allowed). With
 * uniform_imatrix, every matrix gets an importance matrix of ones (all columns equally
 * important), which the types that require one (IQ1/IQ2/IQ3_XXS, Q2_K_S) accept. */
int llorch_quantize_model(const char *in_path, const char *out_path, int32_t ftype, int32_t n_threads,
                          int32_t uniform_imatrix);

/* ggml_quantize_chunk (which runs ggml_quantize_init first): `nrows` rows of `n_per_row` floats
 * from `src + start` into `dst` (row start / n_per_row onwards) with ggml's weight quantizer for `type`, I-quants included. `imatrix`
 * (n_per_row weights) may be NULL unless llorch_ggml_quantize_requires_imatrix(type). Returns
 * bytes written or -1 on a bad argument (checked here, so that ggml never asserts). */
int64_t llorch_ggml_quantize_chunk(int32_t type, const float *src, void *dst, int64_t start,
                                   int64_t nrows, int64_t n_per_row, const float *imatrix);
/* ggml_type_name, or NULL for an id outside ggml's table. */
const char *llorch_ggml_type_name(int32_t type);
/* ggml_quantize_requires_imatrix: 1, 0, or -1 for an unknown id. */
int llorch_ggml_quantize_requires_imatrix(int32_t type);

#ifdef __cplusplus
}
#endif

#endif
