//! llama.cpp as a producer of checkpoints: a safe wrapper over the extractor shim
//! (`csrc/extractor.{h,cpp}`), and the mapping from llama.cpp's graph nodes to the catalogue.

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
pub mod ffi;

pub mod capture;
pub mod extract;
pub mod ggml;
pub mod quantize;

use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Mutex;

/// llama.cpp keeps global state (backend registry, log callback); one session at a time keeps
/// tests that run in parallel threads from stepping on each other.
static SESSION_LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error("{0}")]
    Shim(String),
    #[error("{0}")]
    Usage(String),
}

fn last_error() -> LlamaError {
    // SAFETY: the shim returns a pointer to a thread-local NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(ffi::llorch_last_error()) }
        .to_string_lossy()
        .into_owned();
    LlamaError::Shim(if msg.is_empty() {
        "llama.cpp call failed".to_string()
    } else {
        msg
    })
}

pub use crate::checkpoint::KvType;

/// Model geometry as llama.cpp reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDims {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
}

/// One node captured by the eval callback, gathered to C order `[ne3][ne2][ne1][ne0]`.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub op: String,
    pub ggml_type: i32,
    /// ggml order: innermost first.
    pub ne: [usize; 4],
    pub data: Vec<f32>,
}

/// A captured node as the session holds it: valid until the next decode.
#[derive(Debug, Clone, Copy)]
pub struct CaptureView<'a> {
    pub name: &'a str,
    pub op: &'a str,
    pub ggml_type: i32,
    /// ggml order: innermost first.
    pub ne: [usize; 4],
    pub data: &'a [f32],
}

impl Capture {
    pub fn view(&self) -> CaptureView<'_> {
        CaptureView {
            name: &self.name,
            op: &self.op,
            ggml_type: self.ggml_type,
            ne: self.ne,
            data: &self.data,
        }
    }
}

impl CaptureView<'_> {
    pub fn to_owned(&self) -> Capture {
        Capture {
            name: self.name.to_string(),
            op: self.op.to_string(),
            ggml_type: self.ggml_type,
            ne: self.ne,
            data: self.data.to_vec(),
        }
    }
}

/// A loaded model and a validation context (flash attention off, chosen KV type and threads).
pub struct Session {
    raw: NonNull<ffi::llorch_session>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl Session {
    pub fn open(
        model: &Path,
        n_ctx: usize,
        kv_type: KvType,
        threads: usize,
        repack: bool,
    ) -> Result<Session, LlamaError> {
        let guard = SESSION_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let path = CString::new(model.to_string_lossy().as_bytes())
            .map_err(|_| LlamaError::Usage("model path contains a NUL byte".into()))?;
        let opts = ffi::llorch_options {
            n_threads: threads.max(1) as i32,
            kv_type: kv_type.ggml_id(),
            n_ctx: n_ctx as i32,
            use_repack: i32::from(repack),
        };
        // SAFETY: both pointers are valid for the call; the shim copies what it keeps.
        let raw = unsafe { ffi::llorch_session_open(path.as_ptr(), &opts) };
        let raw = NonNull::new(raw).ok_or_else(last_error)?;
        Ok(Session { raw, _guard: guard })
    }

    pub fn dims(&self) -> ModelDims {
        let mut d = ffi::llorch_model_dims {
            n_layer: 0,
            n_embd: 0,
            n_head: 0,
            n_head_kv: 0,
            n_vocab: 0,
            n_ctx_train: 0,
        };
        // SAFETY: valid session and out pointer.
        unsafe { ffi::llorch_model_dims_get(self.raw.as_ptr(), &mut d) };
        ModelDims {
            n_layer: d.n_layer as usize,
            n_embd: d.n_embd as usize,
            n_head: d.n_head as usize,
            n_head_kv: d.n_head_kv as usize,
            n_vocab: d.n_vocab as usize,
            n_ctx_train: d.n_ctx_train as usize,
        }
    }

    /// A metadata string value, as llama.cpp formats it.
    pub fn meta(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: buf is writable for buf.len() bytes.
            let n = unsafe {
                ffi::llorch_model_meta(
                    self.raw.as_ptr(),
                    key.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return None;
            }
            if (n as usize) < buf.len() {
                buf.truncate(n as usize);
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
            buf.resize(n as usize + 1, 0);
        }
    }

    /// llama.cpp's tokenization: `add_special` adds BOS/EOS as the model asks; special-token text
    /// is parsed as such only when `parse_special`.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<i32>, LlamaError> {
        let len =
            i32::try_from(text.len()).map_err(|_| LlamaError::Usage("prompt too long".into()))?;
        let mut out = vec![0i32; text.len() + 8];
        loop {
            // SAFETY: text is valid for len bytes; out is writable for out.len() ids.
            let n = unsafe {
                ffi::llorch_tokenize(
                    self.raw.as_ptr(),
                    text.as_ptr().cast(),
                    len,
                    add_special,
                    parse_special,
                    out.as_mut_ptr(),
                    out.len() as i32,
                )
            };
            if n >= 0 {
                out.truncate(n as usize);
                return Ok(out);
            }
            if n == i32::MIN {
                return Err(LlamaError::Shim(
                    "llama.cpp could not tokenize the prompt".into(),
                ));
            }
            out.resize((-n) as usize, 0);
        }
    }

    /// The bytes a token stands for.
    pub fn token_to_piece(&self, token: i32) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        loop {
            // SAFETY: buf is writable for buf.len() bytes.
            let n = unsafe {
                ffi::llorch_token_to_piece(
                    self.raw.as_ptr(),
                    token,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// Sets the exact node names the eval callback captures from the next decode on.
    pub fn capture_names(&mut self, names: &[String]) -> Result<(), LlamaError> {
        let owned: Vec<CString> = names
            .iter()
            .map(|n| {
                CString::new(n.as_str())
                    .map_err(|_| LlamaError::Usage(format!("node name {n:?} has a NUL")))
            })
            .collect::<Result<_, _>>()?;
        let ptrs: Vec<*const std::os::raw::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: ptrs point into `owned`, alive for the call; the shim copies the strings.
        let rc = unsafe {
            ffi::llorch_capture_names(self.raw.as_ptr(), ptrs.as_ptr(), ptrs.len() as i32)
        };
        if rc != 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Sets the nodes the eval callback captures from the next decode on: each name with the
    /// one ggml op taken under it (a name may come several times). Only these nodes are
    /// observed: every observed node ends a graph compute of its own.
    pub fn capture_nodes(&mut self, nodes: &[(String, &str)]) -> Result<(), LlamaError> {
        let cstr = |s: &str| {
            CString::new(s).map_err(|_| LlamaError::Usage(format!("node name {s:?} has a NUL")))
        };
        let names: Vec<CString> = nodes
            .iter()
            .map(|(n, _)| cstr(n))
            .collect::<Result<_, _>>()?;
        let ops: Vec<CString> = nodes
            .iter()
            .map(|(_, o)| cstr(o))
            .collect::<Result<_, _>>()?;
        let name_ptrs: Vec<*const std::os::raw::c_char> =
            names.iter().map(|c| c.as_ptr()).collect();
        // An empty op takes the name with any op (a null pointer for the shim).
        let op_ptrs: Vec<*const std::os::raw::c_char> = ops
            .iter()
            .map(|c| {
                if c.as_bytes().is_empty() {
                    std::ptr::null()
                } else {
                    c.as_ptr()
                }
            })
            .collect();
        // SAFETY: both arrays hold nodes.len() pointers into CStrings alive for the call; the
        // shim copies the strings.
        let rc = unsafe {
            ffi::llorch_capture_nodes(
                self.raw.as_ptr(),
                name_ptrs.as_ptr(),
                op_ptrs.as_ptr(),
                nodes.len() as i32,
            )
        };
        if rc != 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Captures every F32/F16/BF16/I32 node from the next decode on (a survey of the graph).
    pub fn capture_all(&mut self) {
        // SAFETY: n < 0 means "all"; no names are read.
        unsafe { ffi::llorch_capture_names(self.raw.as_ptr(), std::ptr::null(), -1) };
    }

    /// Captures every F32/F16/BF16/I32 node under its own name and, a second time, each node
    /// that a `src:NAME` among `names` asks for (see [`Session::capture_names`]).
    pub fn capture_all_and(&mut self, names: &[String]) -> Result<(), LlamaError> {
        let owned: Vec<CString> = names
            .iter()
            .map(|n| {
                CString::new(n.as_str())
                    .map_err(|_| LlamaError::Usage(format!("node name {n:?} has a NUL")))
            })
            .collect::<Result<_, _>>()?;
        let ptrs: Vec<*const std::os::raw::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        let n = -(ptrs.len() as i32) - 1;
        // SAFETY: ptrs point into `owned`, alive for the call; the shim copies the strings.
        let rc = unsafe { ffi::llorch_capture_names(self.raw.as_ptr(), ptrs.as_ptr(), n) };
        if rc != 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Evaluates `tokens` at positions `pos0..` and returns the captured nodes in graph order.
    pub fn decode(&mut self, tokens: &[i32], pos0: usize) -> Result<Vec<Capture>, LlamaError> {
        Ok(self
            .decode_views(tokens, pos0)?
            .iter()
            .map(CaptureView::to_owned)
            .collect())
    }

    /// As [`Session::decode`], the captures borrowed from the session (no copy).
    pub fn decode_views(
        &mut self,
        tokens: &[i32],
        pos0: usize,
    ) -> Result<Vec<CaptureView<'_>>, LlamaError> {
        // SAFETY: tokens is valid for its length.
        let rc = unsafe {
            ffi::llorch_decode(
                self.raw.as_ptr(),
                tokens.as_ptr(),
                tokens.len() as i32,
                pos0 as i32,
            )
        };
        if rc != 0 {
            return Err(last_error());
        }
        // SAFETY: valid session.
        let n = unsafe { ffi::llorch_capture_count(self.raw.as_ptr()) };
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let mut c = ffi::llorch_capture {
                name: std::ptr::null(),
                op: std::ptr::null(),
                type_: 0,
                ne: [0; 4],
                data: std::ptr::null(),
            };
            // SAFETY: index in range; the shim fills c with pointers valid until the next decode.
            if unsafe { ffi::llorch_capture_get(self.raw.as_ptr(), i, &mut c) } != 0 {
                return Err(last_error());
            }
            let ne = c.ne.map(|v| v as usize);
            let count: usize = ne.iter().product();
            // SAFETY: the shim guarantees `count` floats at c.data and NUL-terminated strings,
            // alive until the next decode, clear or free, none of which can happen while the
            // returned views borrow the session.
            let (name, op, data) = unsafe {
                (
                    CStr::from_ptr(c.name).to_str().unwrap_or(""),
                    CStr::from_ptr(c.op).to_str().unwrap_or(""),
                    if count == 0 {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(c.data, count)
                    },
                )
            };
            out.push(CaptureView {
                name,
                op,
                ggml_type: c.type_,
                ne,
                data,
            });
        }
        Ok(out)
    }

    /// `llama_get_logits_ith` of the last decode.
    pub fn logits(&self, row: usize, n_vocab: usize) -> Option<Vec<f32>> {
        // SAFETY: valid session; the returned pointer, if any, holds n_vocab floats.
        let p = unsafe { ffi::llorch_logits(self.raw.as_ptr(), row as i32) };
        if p.is_null() {
            return None;
        }
        Some(unsafe { std::slice::from_raw_parts(p, n_vocab) }.to_vec())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: raw came from llorch_session_open and is freed once.
        unsafe { ffi::llorch_session_free(self.raw.as_ptr()) };
    }
}

/// In a child process whose stderr the parent reads: llama.cpp's hidden log lines and a ggml
/// assertion's message are written to stderr with a marker (see `csrc/extractor.h`).
pub fn set_child_log(on: bool) {
    // SAFETY: plain global setter.
    unsafe { ffi::llorch_set_child_log(on) }
}

/// Silences llama.cpp's own log (errors still reach stderr) unless `verbose`.
pub fn set_verbose(verbose: bool) {
    // SAFETY: plain global setter.
    unsafe { ffi::llorch_set_verbose(verbose) }
}
