"""Constants shared by the data pipeline and the model.

The collator writes ``IMAGE_SLOT_ID`` into ``input_ids`` at every position where a visual token goes; the
model replaces the embeddings at exactly those positions with the projected VPG outputs. A negative id can
never collide with a vocabulary entry, so no tokenizer needs a new token and no frozen embedding matrix is
resized.
"""

IMAGE_SLOT_ID = -200
"""Placeholder written into ``input_ids`` for each visual-token slot ``(one per VPG query)``."""

IMAGE_MARKER = "<image>"
"""Marker in a prompt template where the visual tokens go (exactly once per prompt)."""

IGNORE_INDEX = -100
"""Label value ignored by the loss (visual, instruction and padding positions)."""
