"""Model sources (hub id, local folder, zoo name), safe loading (safetensors, no remote code unless asked),
devices and dtypes, and memory helpers shared by the engine and training."""
