"""Serving a trained checkpoint: ``vict serve`` (an OpenAI-compatible HTTP API) and ``vict demo`` (a Gradio app).

Both hand questions to one ``Batcher`` (``vict.serve.batcher``), which batches concurrent requests through the
inference layer (``vict.inference``): the contexts, prompts and decoding are those of ``vict ask``.
"""
