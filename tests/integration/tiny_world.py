"""Overrides that run the shipped world configs on the tiny random model instead of the world's pretrained zoo.

The shipped `configs/world/*.yaml` train on the zoo (minutes to build). The training tests run them on the tiny
random model with the LoRA settings their bounds were measured with: its random LM's frozen head bounds every
logit to about +-0.6, so LoRA also wraps lm_head there.
"""

TINY = [
    "model.builder=tiny",
    "method.r=8",
    "method.alpha=16",
    "method.target_modules=[q_proj,v_proj,lm_head]",
    "train.lr=1e-2",
    "train.connector_lr=1e-2",
    "data.max_length=96",
    "train.cache_vision_features=false",
]
