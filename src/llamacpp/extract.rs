//! The extract job (filled in below).
