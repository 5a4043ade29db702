"""The trainer: model builder, datasets, loop and worker entry point. The only daemon package that imports torch,
and only inside worker processes (and lazily, in the inference service)."""
