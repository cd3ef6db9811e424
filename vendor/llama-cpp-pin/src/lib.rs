// Placeholder: this manifest exists only to pin and fetch llama.cpp source.
