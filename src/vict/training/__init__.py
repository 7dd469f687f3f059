"""Helpers of the training recipe (``vict.recipes.train``): batch order, training state, checkpoints, records.

- ``sampler``: deterministic, resumable, length-grouped batch plan sharded over processes;
- ``state``: optimizer / scheduler / RNG state and counters in safetensors + JSON (no pickle);
- ``checkpoints``: checkpoint naming, latest (the newest intact one), rotation;
- ``sharding``: FSDP (frozen LLM sharded, trainable parts replicated and averaged) for FSDP launches;
- ``run_lock``: one run per output folder (lock, previous-run guard, ``--overwrite``);
- ``continuation``: resume (config must match) and ``init_from`` (the next stage starts from a checkpoint);
- ``metrics``: ``metrics.jsonl`` + optional TensorBoard, throughput;
- ``plots``: ``loss.png``;
- ``signals``: save-then-exit on SIGTERM / SIGINT.
"""
