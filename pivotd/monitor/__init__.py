"""Resource monitoring: a sampler thread (psutil + NVML), a ring buffer and a downsampled history."""
