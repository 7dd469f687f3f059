"""The VICT model: a frozen BLIP-2 visual prompt generator, a trainable projection and a PEFT-wrapped LLM.

Submodules: ``vpg`` (VisualPromptGenerator), ``vision_llm`` (VisionLLM, VisionLLMConfig), ``builders``
(build_tiny, build_paper, paper_footprint), ``tokenizer`` (train_tokenizer), ``hf_checkpoint`` and ``lavis``
(checkpoint readers), ``summary`` (parameter tables), ``cli`` (``vict inspect``).
"""
