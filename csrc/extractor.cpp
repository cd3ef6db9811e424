// llorch-diff extractor: llama.cpp's eval callback, tensor gathering, and a narrow C ABI.
//
// After the scheduler computes a node we asked for, the callback copies it out with
// ggml_backend_tensor_get and gathers it through its strides (views and permuted nodes are not
// contiguous), converting F16/BF16 to f32. Which nodes to ask for is the Rust catalogue's call.

#include "extractor.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

thread_local std::string g_last_error;
bool g_verbose = false;
std::once_flag g_backend_once;

void set_error(const std::string &msg) { g_last_error = msg; }

// Child mode (llorch_set_child_log): the lines that are not shown go to stderr too, each
// prefixed with "\x1eL", for the parent process to keep as the log's tail.
bool g_child_log = false;
std::mutex g_log_mutex;
std::string g_log_line;

void log_callback(enum ggml_log_level level, const char *text, void *) {
    if (g_verbose || level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
        return;
    }
    if (!g_child_log || text == nullptr) return;
    std::lock_guard<std::mutex> lock(g_log_mutex);
    for (const char *p = text; *p != '\0'; ++p) {
        if (*p != '\n') {
            g_log_line.push_back(*p);
            continue;
        }
        if (!g_log_line.empty()) {
            std::string out = "\x1eL" + g_log_line + "\n";
            fwrite(out.data(), 1, out.size(), stderr);
        }
        g_log_line.clear();
    }
}

// Child mode: an assertion's message is sent as "\x1eA..." instead of a debugger backtrace;
// ggml aborts right after.
void abort_callback(const char *message) {
    std::string out = std::string("\x1e" "A") + (message ? message : "") + "\n";
    fwrite(out.data(), 1, out.size(), stderr);
    fflush(stderr);
}

// LLORCH_DIFF_TEST_CRASH=abort|segv[:N]: a test-only crash inside llama_decode's graph
// compute of decode N (default 0), to prove that a crash of llama.cpp is reported.
enum class TestCrash { None, Abort, Segv };

void test_crash(TestCrash kind) {
    if (kind == TestCrash::Abort) {
        GGML_ASSERT(!"test crash (LLORCH_DIFF_TEST_CRASH=abort)");
    } else if (kind == TestCrash::Segv) {
        volatile int *volatile p = nullptr;
        *p = 1;
    }
}

struct Captured {
    std::string name;
    std::string op;
    int32_t type;
    int64_t ne[4];
    std::vector<float> data;
};

}  // namespace

struct llorch_session {
    llama_model *model = nullptr;
    llama_context *ctx = nullptr;
    const llama_vocab *vocab = nullptr;
    ggml_threadpool *threadpool = nullptr;
    // Wanted node name -> the ops taken under it (empty: every op).
    std::unordered_map<std::string, std::vector<std::string>> wanted;
    bool any_src = false;  // some wanted name is "src:NAME"
    bool capture_all = false;
    // captures[0..n_captures) are this decode's; the rest keep their buffers for the next one.
    std::vector<Captured> captures;
    size_t n_captures = 0;
    std::vector<uint8_t> scratch;
    std::string capture_error;
    TestCrash crash = TestCrash::None;
    int crash_decode = 0;
    int n_decodes = 0;
};

namespace {

float element_to_f32(ggml_type type, const uint8_t *p) {
    switch (type) {
        case GGML_TYPE_F32: {
            float v;
            std::memcpy(&v, p, sizeof v);
            return v;
        }
        case GGML_TYPE_F16: {
            ggml_fp16_t v;
            std::memcpy(&v, p, sizeof v);
            return ggml_fp16_to_fp32(v);
        }
        case GGML_TYPE_BF16: {
            ggml_bf16_t v;
            std::memcpy(&v, p, sizeof v);
            return ggml_bf16_to_fp32(v);
        }
        case GGML_TYPE_I32: {
            int32_t v;
            std::memcpy(&v, p, sizeof v);
            return static_cast<float>(v);
        }
        default:
            return 0.0f;
    }
}

void convert_row(ggml_type type, const uint8_t *row, size_t nb0, int64_t n, float *out) {
    if (type == GGML_TYPE_F32 && nb0 == sizeof(float)) {
        std::memcpy(out, row, static_cast<size_t>(n) * sizeof(float));
    } else if (type == GGML_TYPE_F16 && nb0 == sizeof(ggml_fp16_t)) {
        ggml_fp16_to_fp32_row(reinterpret_cast<const ggml_fp16_t *>(row), out, n);
    } else {
        for (int64_t i0 = 0; i0 < n; ++i0) out[i0] = element_to_f32(type, row + i0 * nb0);
    }
}

bool capture_node(llorch_session *s, ggml_tensor *t, const std::string &name) {
    const ggml_type type = t->type;
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16 && type != GGML_TYPE_I32) {
        if (s->capture_all) return true;  // survey mode: quantized nodes are listed elsewhere
        s->capture_error = std::string("node ") + t->name + " has type " + ggml_type_name(type) +
                           ", which the extractor does not convert";
        return false;
    }
    // A host buffer (the CPU backend's) is read in place; any other is copied out first.
    // ggml_nbytes of a strided view is its extent from the first element to the last one.
    const uint8_t *base = nullptr;
    if (t->buffer != nullptr && ggml_backend_buffer_is_host(t->buffer) && t->data != nullptr) {
        base = static_cast<const uint8_t *>(t->data);
    } else {
        const size_t extent = ggml_nbytes(t);
        s->scratch.resize(extent);
        ggml_backend_tensor_get(t, s->scratch.data(), 0, extent);
        base = s->scratch.data();
    }

    // Reuse the buffer of the capture that had this slot in the previous decode.
    if (s->n_captures == s->captures.size()) s->captures.emplace_back();
    Captured &c = s->captures[s->n_captures++];
    c.name = name;
    c.op = ggml_op_name(t->op);
    c.type = type;
    for (int i = 0; i < 4; ++i) c.ne[i] = t->ne[i];
    const size_t n = static_cast<size_t>(ggml_nelements(t));
    if (c.data.capacity() < n) {
        c.data = std::vector<float>();
        c.data.reserve(n);
    }
    c.data.resize(n);  // no page is touched twice: the rows below overwrite every element
    float *dst = c.data.data();
    for (int64_t i3 = 0; i3 < t->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < t->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < t->ne[1]; ++i1) {
                const uint8_t *row = base + i3 * t->nb[3] + i2 * t->nb[2] + i1 * t->nb[1];
                convert_row(type, row, t->nb[0], t->ne[0], dst);
                dst += t->ne[0];
            }
    return true;
}

// The name a node is wanted under: its own, or "src:NAME" when one of its sources is the tensor
// NAME. Some nodes are never named by llama.cpp (gpt2's attention output projection plus bias is
// "node_N"), but their weight operands always are.
const std::string *wanted_as(const llorch_session *s, const ggml_tensor *t, std::string &scratch) {
    if (s->capture_all) {
        scratch = t->name;
        return &scratch;
    }
    auto taken = [&](const std::string &key) {
        auto it = s->wanted.find(key);
        if (it == s->wanted.end()) return false;
        if (it->second.empty()) return true;
        const char *op = ggml_op_name(t->op);
        for (const auto &o : it->second)
            if (o == op) return true;
        return false;
    };
    scratch = t->name;
    if (taken(scratch)) return &scratch;
    if (!s->any_src) return nullptr;
    for (int i = 0; i < GGML_MAX_SRC; ++i) {
        if (t->src[i] == nullptr) continue;
        scratch = std::string("src:") + t->src[i]->name;
        if (taken(scratch)) return &scratch;
    }
    return nullptr;
}

bool eval_callback(ggml_tensor *t, bool ask, void *user_data) {
    auto *s = static_cast<llorch_session *>(user_data);
    if (s->crash != TestCrash::None && s->n_decodes - 1 == s->crash_decode) {
        test_crash(s->crash);
    }
    std::string key;
    const std::string *as = wanted_as(s, t, key);
    if (ask) {
        return as != nullptr;
    }
    // A node of a branch the graph did not select (ggml_build_forward_select) holds no value.
    if (s->capture_all && (t->flags & GGML_TENSOR_FLAG_COMPUTE) == 0) {
        return true;
    }
    if (as != nullptr && s->capture_error.empty()) {
        capture_node(s, t, *as);
    }
    // Capturing everything: a node also wanted as "src:NAME" is captured a second time under it.
    if (s->capture_all && !s->wanted.empty() && s->capture_error.empty()) {
        for (int i = 0; i < GGML_MAX_SRC; ++i) {
            if (t->src[i] == nullptr) continue;
            key = std::string("src:") + t->src[i]->name;
            if (s->wanted.count(key) != 0) {
                capture_node(s, t, key);
                break;
            }
        }
    }
    return true;  // keep computing
}

}  // namespace

extern "C" {

const char *llorch_last_error(void) { return g_last_error.c_str(); }

void llorch_set_verbose(bool verbose) {
    g_verbose = verbose;
    llama_log_set(log_callback, nullptr);
}

void llorch_set_child_log(bool on) {
    g_child_log = on;
    ggml_set_abort_callback(on ? abort_callback : nullptr);
    llama_log_set(log_callback, nullptr);
}

llorch_session *llorch_session_open(const char *model_path, const llorch_options *options) {
    if (model_path == nullptr || options == nullptr) {
        set_error("null argument");
        return nullptr;
    }
    if (options->kv_type != GGML_TYPE_F32 && options->kv_type != GGML_TYPE_F16 &&
        options->kv_type != GGML_TYPE_BF16) {
        set_error("KV cache type must be f32, f16 or bf16");
        return nullptr;
    }
    llama_log_set(log_callback, nullptr);
    std::call_once(g_backend_once, [] { llama_backend_init(); });

    auto *s = new llorch_session();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.use_extra_bufts = options->use_repack != 0;
    s->model = llama_model_load_from_file(model_path, mp);
    if (s->model == nullptr) {
        set_error(std::string("llama.cpp could not load the model ") + model_path);
        delete s;
        return nullptr;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(options->n_ctx);
    cp.n_batch = static_cast<uint32_t>(options->n_ctx);
    cp.n_ubatch = static_cast<uint32_t>(options->n_ctx);
    cp.n_seq_max = 1;
    cp.n_threads = options->n_threads;
    cp.n_threads_batch = options->n_threads;
    // Without this the attention scores are fused away and never exist as a node.
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = static_cast<ggml_type>(options->kv_type);
    cp.type_v = static_cast<ggml_type>(options->kv_type);
    cp.cb_eval = eval_callback;
    cp.cb_eval_user_data = s;
    cp.no_perf = true;
    cp.op_offload = false;
    s->ctx = llama_init_from_model(s->model, cp);
    if (s->ctx == nullptr) {
        set_error("llama.cpp could not create a context for the model");
        llama_model_free(s->model);
        delete s;
        return nullptr;
    }
    // One thread pool for the session: without it, every graph compute (one per observed node)
    // starts and joins its own threads. Same thread count, so the same work split and results.
    ggml_threadpool_params tpp = ggml_threadpool_params_default(options->n_threads);
    s->threadpool = ggml_threadpool_new(&tpp);
    if (s->threadpool != nullptr) llama_attach_threadpool(s->ctx, s->threadpool, s->threadpool);
    s->vocab = llama_model_get_vocab(s->model);
    if (const char *crash = std::getenv("LLORCH_DIFF_TEST_CRASH")) {
        const std::string v = crash;
        if (v.rfind("abort", 0) == 0) s->crash = TestCrash::Abort;
        if (v.rfind("segv", 0) == 0) s->crash = TestCrash::Segv;
        const size_t colon = v.find(':');
        if (colon != std::string::npos) s->crash_decode = std::atoi(v.c_str() + colon + 1);
    }
    return s;
}

void llorch_session_free(llorch_session *s) {
    if (s == nullptr) return;
    if (s->ctx) llama_free(s->ctx);
    if (s->threadpool) ggml_threadpool_free(s->threadpool);
    if (s->model) llama_model_free(s->model);
    delete s;
}

int llorch_model_dims_get(const llorch_session *s, llorch_model_dims *out) {
    if (s == nullptr || out == nullptr) return -1;
    out->n_layer = llama_model_n_layer(s->model);
    out->n_embd = llama_model_n_embd(s->model);
    out->n_head = llama_model_n_head(s->model);
    out->n_head_kv = llama_model_n_head_kv(s->model);
    out->n_vocab = llama_vocab_n_tokens(s->vocab);
    out->n_ctx_train = llama_model_n_ctx_train(s->model);
    return 0;
}

int32_t llorch_model_meta(const llorch_session *s, const char *key, char *buf, size_t buf_len) {
    if (s == nullptr || key == nullptr) return -1;
    return llama_model_meta_val_str(s->model, key, buf, buf_len);
}

int32_t llorch_tokenize(const llorch_session *s, const char *text, int32_t text_len, bool add_special,
                        bool parse_special, int32_t *out, int32_t cap) {
    if (s == nullptr) return 0;
    return llama_tokenize(s->vocab, text, text_len, out, cap, add_special, parse_special);
}

int32_t llorch_token_to_piece(const llorch_session *s, int32_t token, char *buf, int32_t buf_len) {
    if (s == nullptr) return 0;
    return llama_token_to_piece(s->vocab, token, buf, buf_len, 0, true);
}

int llorch_capture_names(llorch_session *s, const char *const *names, int32_t n) {
    if (s == nullptr) return -1;
    return llorch_capture_nodes(s, names, nullptr, n);
}

int llorch_capture_nodes(llorch_session *s, const char *const *names, const char *const *ops, int32_t n) {
    if (s == nullptr) return -1;
    s->wanted.clear();
    s->any_src = false;
    s->capture_all = n < 0;
    const int32_t count = n < 0 ? -n - 1 : n;
    for (int32_t i = 0; i < count; ++i) {
        auto &taken = s->wanted[names[i]];
        const bool any_op = ops == nullptr || ops[i] == nullptr;
        // A name asked for with any op is taken with every op.
        if (any_op) {
            taken.clear();
            taken.emplace_back();
        } else if (!(taken.size() == 1 && taken[0].empty())) {
            taken.emplace_back(ops[i]);
        }
        if (std::strncmp(names[i], "src:", 4) == 0) s->any_src = true;
    }
    for (auto &kv : s->wanted)
        if (kv.second.size() == 1 && kv.second[0].empty()) kv.second.clear();
    return 0;
}

int32_t llorch_capture_count(const llorch_session *s) {
    return s == nullptr ? 0 : static_cast<int32_t>(s->n_captures);
}

int llorch_capture_get(const llorch_session *s, int32_t index, llorch_capture *out) {
    if (s == nullptr || out == nullptr || index < 0 || index >= static_cast<int32_t>(s->n_captures)) {
        return -1;
    }
    const Captured &c = s->captures[static_cast<size_t>(index)];
    out->name = c.name.c_str();
    out->op = c.op.c_str();
    out->type = c.type;
    for (int i = 0; i < 4; ++i) out->ne[i] = c.ne[i];
    out->data = c.data.data();
    return 0;
}

int llorch_decode(llorch_session *s, const int32_t *tokens, int32_t n_tokens, int32_t pos0) {
    if (s == nullptr || tokens == nullptr || n_tokens <= 0) {
        set_error("decode needs at least one token");
        return -1;
    }
    s->n_captures = 0;
    s->capture_error.clear();
    s->n_decodes++;
    llama_batch batch = llama_batch_init(n_tokens, 0, 1);
    for (int32_t i = 0; i < n_tokens; ++i) {
        batch.token[i] = tokens[i];
        batch.pos[i] = pos0 + i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        // Every position is an output, so the last layer keeps all rows (no inp_out_ids gather).
        batch.logits[i] = 1;
    }
    batch.n_tokens = n_tokens;
    const int32_t rc = llama_decode(s->ctx, batch);
    llama_batch_free(batch);
    if (rc != 0) {
        set_error("llama_decode failed with code " + std::to_string(rc));
        return -1;
    }
    if (!s->capture_error.empty()) {
        set_error(s->capture_error);
        return -1;
    }
    return 0;
}

const float *llorch_logits(llorch_session *s, int32_t i) {
    if (s == nullptr) return nullptr;
    return llama_get_logits_ith(s->ctx, i);
}

size_t llorch_ggml_row_size(int32_t type, int64_t n) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return 0;
    return ggml_row_size(static_cast<ggml_type>(type), n);
}

int32_t llorch_ggml_blck_size(int32_t type) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return -1;
    return static_cast<int32_t>(ggml_blck_size(static_cast<ggml_type>(type)));
}

int llorch_ggml_dequantize(int32_t type, const void *src, float *dst, int64_t n) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return -1;
    const ggml_type_traits *tr = ggml_get_type_traits(static_cast<ggml_type>(type));
    if (tr->to_float == nullptr || n % tr->blck_size != 0) return -1;
    tr->to_float(src, dst, n);
    return 0;
}

int64_t llorch_ggml_quantize_ref(int32_t type, const float *src, void *dst, int64_t n) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return -1;
    const ggml_type_traits *tr = ggml_get_type_traits(static_cast<ggml_type>(type));
    if (tr->from_float_ref == nullptr || n % tr->blck_size != 0) return -1;
    tr->from_float_ref(src, dst, n);
    return static_cast<int64_t>(ggml_row_size(static_cast<ggml_type>(type), n));
}

int64_t llorch_ggml_quantize_cpu(int32_t type, const float *src, void *dst, int64_t n) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return -1;
    ggml_cpu_init();
    const ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(static_cast<ggml_type>(type));
    if (tr->from_float == nullptr || n % ggml_blck_size(static_cast<ggml_type>(type)) != 0) return -1;
    tr->from_float(src, dst, n);
    return static_cast<int64_t>(ggml_row_size(static_cast<ggml_type>(type), n));
}

int32_t llorch_ggml_vec_dot_type(int32_t type) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return -1;
    ggml_cpu_init();
    return static_cast<int32_t>(ggml_get_type_traits_cpu(static_cast<ggml_type>(type))->vec_dot_type);
}

int llorch_ggml_vec_dot(int32_t type, int64_t n, const void *weight, const void *activation, float *out) {
    if (type < 0 || type >= GGML_TYPE_COUNT || out == nullptr) return -1;
    ggml_cpu_init();
    const ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(static_cast<ggml_type>(type));
    if (tr->vec_dot == nullptr) return -1;
    tr->vec_dot(static_cast<int>(n), out, 0, weight, 0, activation, 0, 1);
    return 0;
}

int llorch_ggml_mul_mat(int32_t type, const void *weight, int64_t n_in, int64_t n_out,
                        const float *activations, int64_t t, int32_t n_threads, int32_t use_repack,
                        float *out) {
    if (type < 0 || type >= GGML_TYPE_COUNT || weight == nullptr || activations == nullptr ||
        out == nullptr || n_in <= 0 || n_out <= 0 || t <= 0 || n_threads <= 0) {
        set_error("bad argument");
        return -1;
    }
    ggml_cpu_init();
    const ggml_type wtype = static_cast<ggml_type>(type);
    if (n_in % ggml_blck_size(wtype) != 0) {
        set_error("row length is not a whole number of blocks");
        return -1;
    }
    ggml_init_params ip = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ggml_context *ctx_w = ggml_init(ip);
    ggml_context *ctx = ggml_init(ip);
    ggml_tensor *w = ggml_new_tensor_2d(ctx_w, wtype, n_in, n_out);
    ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_in, t);
    ggml_tensor *y = ggml_mul_mat(ctx, w, x);
    ggml_cgraph *gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);

    // The repack buffer type is the CPU device's first extra buffer type, as llama.cpp finds it.
    ggml_backend_buffer_t wbuf = nullptr;
    int repacked = 0;
    if (use_repack) {
        ggml_backend_reg_t reg = ggml_backend_cpu_reg();
        ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, 0);
        auto get_extra = (ggml_backend_dev_get_extra_bufts_t)ggml_backend_reg_get_proc_address(
            reg, "ggml_backend_dev_get_extra_bufts");
        ggml_backend_buffer_type_t *extra = get_extra ? get_extra(dev) : nullptr;
        for (; extra && *extra; ++extra) {
            if (std::strcmp(ggml_backend_buft_name(*extra), "CPU_REPACK") != 0) continue;
            wbuf = ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, *extra);
            // init_tensor leaves `extra` null when there is no repacked layout for this weight.
            if (wbuf && w->extra == nullptr) {
                ggml_backend_buffer_free(wbuf);
                wbuf = nullptr;
                // Unbind the weight so that the plain buffer below allocates it.
                w->buffer = nullptr;
                w->data = nullptr;
            }
            break;
        }
        repacked = wbuf != nullptr;
    }
    if (wbuf == nullptr) {
        wbuf = ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, ggml_backend_cpu_buffer_type());
    }
    ggml_backend_buffer_t xbuf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_cpu_buffer_type());
    ggml_backend_t backend = ggml_backend_cpu_init();
    int rc = -1;
    if (wbuf && xbuf && backend) {
        ggml_backend_cpu_set_n_threads(backend, n_threads);
        ggml_backend_tensor_set(w, weight, 0, ggml_nbytes(w));
        ggml_backend_tensor_set(x, activations, 0, ggml_nbytes(x));
        if (ggml_backend_graph_compute(backend, gf) == GGML_STATUS_SUCCESS) {
            ggml_backend_tensor_get(y, out, 0, ggml_nbytes(y));
            rc = repacked;
        } else {
            set_error("graph compute failed");
        }
    } else {
        set_error("could not allocate the matmul's buffers");
    }
    if (backend) ggml_backend_free(backend);
    if (xbuf) ggml_backend_buffer_free(xbuf);
    if (wbuf) ggml_backend_buffer_free(wbuf);
    ggml_free(ctx);
    ggml_free(ctx_w);
    return rc;
}

int llorch_quantize_model(const char *in_path, const char *out_path, int32_t ftype, int32_t n_threads,
                          int32_t uniform_imatrix) {
    if (in_path == nullptr || out_path == nullptr) {
        set_error("null argument");
        return -1;
    }
    llama_log_set(log_callback, nullptr);
    std::call_once(g_backend_once, [] { llama_backend_init(); });
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = n_threads;
    qp.ftype = static_cast<llama_ftype>(ftype);
    qp.allow_requantize = true;

    // One entry of ne[0] ones per matrix, named as the file names its tensors.
    std::vector<std::string> names;
    std::vector<std::vector<float>> columns;
    std::vector<llama_model_imatrix_data> imatrix;
    if (uniform_imatrix) {
        gguf_init_params gp = {true, nullptr};
        gguf_context *g = gguf_init_from_file(in_path, gp);
        if (g == nullptr) {
            set_error(std::string("could not read ") + in_path + " as GGUF");
            return -1;
        }
        for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
            names.emplace_back(gguf_get_tensor_name(g, i));
        }
        gguf_free(g);
        // Tensor shapes come from a metadata-only ggml context.
        ggml_context *meta = nullptr;
        gguf_init_params gp2 = {true, &meta};
        g = gguf_init_from_file(in_path, gp2);
        if (g == nullptr || meta == nullptr) {
            set_error(std::string("could not read ") + in_path + " as GGUF");
            if (g) gguf_free(g);
            return -1;
        }
        std::vector<std::string> kept;
        for (const auto &name : names) {
            ggml_tensor *t = ggml_get_tensor(meta, name.c_str());
            if (t == nullptr || ggml_n_dims(t) < 2) continue;
            kept.push_back(name);
            columns.emplace_back(static_cast<size_t>(t->ne[0] * (ggml_n_dims(t) > 2 ? t->ne[2] : 1)), 1.0f);
        }
        ggml_free(meta);
        gguf_free(g);
        names = std::move(kept);
        for (size_t i = 0; i < names.size(); ++i) {
            imatrix.push_back({names[i].c_str(), columns[i].data(), columns[i].size()});
        }
        imatrix.push_back({nullptr, nullptr, 0});
        qp.imatrix = imatrix.data();
    }
    if (llama_model_quantize(in_path, out_path, &qp) != 0) {
        set_error("llama_model_quantize failed (see llama.cpp's log above)");
        return -1;
    }
    return 0;
}

int64_t llorch_ggml_quantize_chunk(int32_t type, const float *src, void *dst, int64_t start,
                                   int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (type < 0 || type >= GGML_TYPE_COUNT || src == nullptr || dst == nullptr || start < 0 ||
        nrows < 0 || n_per_row <= 0) {
        return -1;
    }
    const ggml_type t = static_cast<ggml_type>(type);
    const int64_t blck = ggml_blck_size(t);
    if (ggml_type_size(t) == 0 || blck <= 0 || n_per_row % blck != 0 || start % n_per_row != 0 ||
        (ggml_quantize_requires_imatrix(t) && imatrix == nullptr)) {
        return -1;
    }
    if (t == GGML_TYPE_Q8_1 || t == GGML_TYPE_Q8_K || t == GGML_TYPE_I8 || t == GGML_TYPE_I16 ||
        t == GGML_TYPE_I32 || t == GGML_TYPE_I64 || t == GGML_TYPE_F64) {
        return -1;  // not in ggml_quantize_chunk's switch (it would abort)
    }
    return static_cast<int64_t>(ggml_quantize_chunk(t, src, dst, start, nrows, n_per_row, imatrix));
}

const char *llorch_ggml_type_name(int32_t type) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return nullptr;
    return ggml_type_name(static_cast<ggml_type>(type));
}

int llorch_ggml_quantize_requires_imatrix(int32_t type) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return -1;
    return ggml_quantize_requires_imatrix(static_cast<ggml_type>(type)) ? 1 : 0;
}

}  // extern "C"
