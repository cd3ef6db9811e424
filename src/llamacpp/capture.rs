//! Which llama.cpp graph node stands for each catalogued checkpoint (filled in with extract).
