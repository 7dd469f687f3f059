"""The VICT model: a frozen BLIP-2 visual prompt generator, a connector and a frozen LLM with a method's delta.

Submodules: ``vpg`` (VisualPromptGenerator), ``vision_llm`` (VisionLLM, VisionLLMConfig), ``builders``
(build_tiny, build_paper, paper_footprint), ``trainable`` (helpers of the single trainable predicate),
``feature_cache`` (per-image features, computed once), ``tokenizer`` (train_tokenizer), ``hf_checkpoint`` and
``lavis`` (checkpoint readers), ``summary`` (parameter tables), ``cli`` (``vict inspect``). Methods live in
``vict.methods``, connectors in ``vict.connectors``.
"""
