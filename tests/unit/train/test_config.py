"""Config loading, overrides and validation; every shipped YAML loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from vict.cli import main
from vict.config import (
    ConfigError,
    VictConfig,
    apply_overrides,
    check_paths,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override_value,
    save_config,
)

ROOT = Path(__file__).resolve().parents[3]
ALL_YAMLS = sorted((ROOT / "configs").rglob("*.yaml"))
RUN_YAMLS = [p for p in ALL_YAMLS if "accelerate" not in p.parts]
ACCELERATE_YAMLS = [p for p in ALL_YAMLS if "accelerate" in p.parts]


def test_configs_are_shipped():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in ALL_YAMLS}
    assert {
        "world/vict_lora.yaml",
        "world/vict_llama_adapter.yaml",
        "llama7b/coco_gqa_vict_lora.yaml",
        "llama7b/coco_gqa_vict_llama_adapter.yaml",
        "llama7b/coco_vpgtrans.yaml",
        "llama7b/coco_gqa_vpgtrans_lora.yaml",
        "llama7b/scienceqa_lavin.yaml",
        "llama7b/coco_gqa_vlora.yaml",
        "accelerate/ddp.yaml",
        "accelerate/fsdp.yaml",
        "accelerate/deepspeed_zero2.yaml",
    } <= names


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_every_yaml_starts_with_the_command_that_runs_it(path: Path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path} must start with a comment giving its command"
    assert path.relative_to(ROOT).as_posix() in first and ("vict " in first or "accelerate " in first), first


@pytest.mark.parametrize("path", RUN_YAMLS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_every_run_yaml_loads_and_validates(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, VictConfig)
    # The file sets what it means to set: nothing silently falls back to a default section.
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= {"model", "method", "connector", "data", "train"}
    assert cfg.method.type == raw["method"]["type"]
    # the file is named after its method (LaVIN's configs after the system: its method is mm_adapter)
    named = path.stem.replace("vict_", "").replace("lavin", "mm_adapter")
    assert cfg.method.type in named, (cfg.method.type, path.stem)
    # the connector the file names, else the method's default, named in the resolved config
    assert cfg.connector.type == raw.get("connector", {}).get("type", "qformer_tokens")
    assert sum(cfg.data.normalised_ratios().values()) == pytest.approx(1.0)
    # Resolved config round-trips.
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_paper_configs_hold_the_vict_setting():
    for path in (ROOT / "configs" / "llama7b").glob("coco_gqa_vict_*.yaml"):
        cfg = load_config(path)
        assert cfg.model.builder == "hf" and cfg.model.vpg_source.startswith("Salesforce/blip2-")
        assert cfg.model.num_extra_queries == 32
        assert cfg.train.mixed_precision == "bf16" and cfg.train.schedule == "cosine" and cfg.train.warmup_steps > 0
        assert set(cfg.data.normalised_ratios().values()) == {0.2}
        if cfg.method.type == "lora":
            settings = cfg.method.settings
            assert (settings.r, settings.target_modules, cfg.train.lr) == (8, ["q_proj", "v_proj"], 1e-4)


def test_the_vpgtrans_paper_config_holds_the_reference_recipe():
    cfg = load_config(ROOT / "configs" / "llama7b" / "coco_vpgtrans.yaml")
    assert cfg.model.vpg_source == "Salesforce/blip2-opt-2.7b" and cfg.model.num_extra_queries == 0
    s = cfg.method.settings
    assert (s.warmup_epochs, s.warmup_lr_scale, s.tune_ln_vision, s.qformer_init) == (1.0, 5.0, True, "pretrained")
    assert cfg.connector.settings.init_weights.endswith("merged_projector.safetensors")
    assert {k: v for k, v in cfg.data.normalised_ratios().items() if v} == {"cap": 1.0}
    from vict.models.builders import paper_footprint

    parts = paper_footprint({"type": "vpgtrans"}, 0)["counts"]["parts"]
    # the reference's trainable set for blip2_opt: Q-Former query path + 32 queries, ln_vision, projector 768 -> 4096
    assert parts["qformer"]["trainable"] == 105_162_240 and parts["qformer"]["frozen"] == 0
    assert parts["connector"]["trainable"] == 768 * 4096 + 4096
    assert parts["vision"]["trainable"] == 2 * 1408 and parts["llm"]["trainable"] == 0


def test_the_vpgtrans_lora_paper_config_is_vict_lora_after_the_vpgtrans_warmup():
    combined = load_config(ROOT / "configs" / "llama7b" / "coco_gqa_vpgtrans_lora.yaml")
    vict = load_config(ROOT / "configs" / "llama7b" / "coco_gqa_vict_lora.yaml")
    s = combined.method.settings
    assert (s.warmup_epochs, s.warmup_lr_scale, s.qformer_init) == (1.0, 5.0, "pretrained")
    assert (s.r, s.alpha, s.dropout, s.target_modules) == (8, 16, 0.05, ["q_proj", "v_proj"])
    assert combined.connector.settings.init_weights.endswith("merged_projector.safetensors")
    # the same model, data and schedule as VICT-LoRA's paper config: only the start and the warm-up differ
    assert combined.model == vict.model and combined.data == vict.data
    assert dataclasses.replace(combined.train, output_dir=vict.train.output_dir) == vict.train
    from vict.models.builders import paper_footprint

    parts = paper_footprint({"type": "vpgtrans_lora"}, 32)["counts"]["parts"]
    assert parts["qformer"]["trainable"] == 0 and parts["vision"]["trainable"] == 0
    assert parts["method"]["trainable"] == 32 * 2 * (4096 * 8 + 8 * 4096)  # LoRA r=8 on q, v of 32 blocks


def test_the_lavin_paper_config_holds_the_reference_setting():
    cfg = load_config(ROOT / "configs" / "llama7b" / "scienceqa_lavin.yaml")
    s = cfg.method.settings
    assert (s.dim, s.groups, s.dropout, s.scale, s.temperature, s.position) == (8, 2, 0.1, 1.0, 10.0, "attn")
    assert cfg.connector.type == "lavin_cls" and cfg.connector.settings.hidden == 128
    assert cfg.data.sqa_ratio == 1.0 and cfg.data.sqa_format == "QCM-ALE" and cfg.model.num_extra_queries == 0
    assert cfg.train.lr == pytest.approx(9e-3 * 32 / 256) and cfg.train.weight_decay == 0.02 and cfg.train.epochs == 20
    from vict.models.builders import paper_footprint

    parts = paper_footprint({"type": "mm_adapter"}, 0, connector={"type": "lavin_cls"})["counts"]["parts"]
    d = 4096
    assert parts["method"]["trainable"] == 32 * ((d * 8 + 8) + 2 * (d * 4 + d) + (d * 2 + 2)) + 2 * d  # 2.63M
    # the MLP from ViT-g's 1408-wide [CLS] tokens, and in each of its 39 blocks the same MM-Adapter as the LLM's
    # (down d_v -> 8, two grouped experts 8 -> d_v, a router d_v -> 2)
    v = 1408
    adapters = 39 * ((v * 8 + 8) + 2 * (2 * (v // 2) * 4 + v) + (v * 2 + 2))
    assert parts["connector"]["trainable"] == (v * 128 + 128) + (128 * d + d) + adapters
    assert parts["vision"]["trainable"] == parts["qformer"]["trainable"] == parts["llm"]["trainable"] == 0


def test_the_vlora_paper_config_holds_the_reference_setting():
    cfg = load_config(ROOT / "configs" / "llama7b" / "coco_gqa_vlora.yaml")
    s, c = cfg.method.settings, cfg.connector.settings
    assert (s.rank, s.alpha, s.every, s.weight_types) == (64, 64.0, 4, ["q", "k", "v", "o", "m"])
    assert cfg.connector.type == "vlora_generator" and (c.width, c.depth, c.heads) == (512, 8, 8)
    assert cfg.model.num_extra_queries == 32
    from vict.models.builders import paper_footprint

    info = paper_footprint(cfg.method, cfg.model.num_extra_queries, connector=cfg.connector)
    parts = info["counts"]["parts"]
    assert info["num_visual_tokens"] == 0
    d, r, blocks, w, n_q, d_q = 4096, 64, 32 // 4, 512, 32 + 32, 768
    # B: one (d_out, r) per adapted block and type; LLaMA-7B has no grouped-query attention, so every d_out is d
    assert parts["method"]["trainable"] == blocks * 5 * d * r  # 10.5M

    def linear(i: int, o: int) -> int:
        return i * o + o

    attention = 4 * w * w + 4 * w  # in_proj (3w x w, 3w) + out_proj (w x w, w)
    block = 2 * attention + 3 * 2 * w + linear(w, 4 * w) + linear(4 * w, w)  # self, cross, 3 LayerNorms, GELU MLP
    trunk = linear(d_q, w) + n_q * w + blocks * w + 8 * block + 2 * w  # projection, positions, queries, final norm
    heads = 5 * linear(w, d * r)  # one Linear(w -> d x r) per type: A (d_in = d, r)
    assert parts["connector"]["trainable"] == trunk + heads == 706_463_232
    assert parts["extra_queries"]["trainable"] == 32 * d_q
    assert info["counts"]["trainable"] == 716_973_568
    assert parts["vision"]["trainable"] == parts["qformer"]["trainable"] == parts["llm"]["trainable"] == 0


@pytest.mark.parametrize("path", ACCELERATE_YAMLS, ids=lambda p: p.name)
def test_accelerate_yamls_are_valid_accelerate_configs(path: Path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))  # what `accelerate launch --config_file` does; rejects unknown keys
    expected = {"ddp.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP", "deepspeed_zero2.yaml": "DEEPSPEED"}[path.name]
    assert cfg.distributed_type == expected and cfg.mixed_precision == "bf16"
    if expected == "FSDP":  # what vict's own sharding reads (vict.training.sharding.FsdpSettings)
        fsdp = cfg.fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    if expected == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 2


def test_two_typos_are_both_reported_with_suggestions(tmp_path: Path):
    path = tmp_path / "typos.yaml"
    path.write_text("data: {world: w}\ntrain:\n  lerning_rate: 1e-3\n  max_stepz: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert len(err.problems) == 2, err.problems
    text = str(err)
    assert "unknown key 'train.max_stepz'; did you mean 'train.max_steps'?" in text
    assert "unknown key 'train.lerning_rate'; did you mean 'train.lr'?" in text
    assert str(path) in text


def test_all_kinds_of_problems_are_collected_at_once():
    data = {
        "modle": {},
        "method": {"type": "lorra", "r": 0},
        "peft": {"type": "lora"},
        "data": {"world": "w", "ratios": {"capp": 1.0}},
        "train": {"batch_size": "eight", "lr": -1},
        "lr": 3,
    }
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    problems = "\n".join(info.value.problems)
    expected = [
        "unknown key 'modle'; did you mean 'model'?",
        "method.type='lorra' is not a registered method; did you mean 'lora'?",
        "unknown key 'peft'; did you mean 'method'?",
        "data.ratios has unknown instruction kind 'capp'; did you mean 'cap'?",
        "train.batch_size='eight' should be an integer",
        "train.lr=-1.0 must be > 0",
        "unknown key 'lr'; did you mean 'train.lr'?",
    ]
    for line in expected:
        assert line in problems
    assert len(info.value.problems) == len(expected)


def test_method_settings_are_checked_against_the_chosen_method():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"method": {"type": "llama_adapter", "r": 4, "adapter_len": 0, "adapter_lenn": 2}})
    problems = "\n".join(info.value.problems)
    assert "method.r: setting(s) of method.type='lora', not of 'llama_adapter'" in problems
    assert "method.adapter_len=0: must be >= 1" not in problems or len(info.value.problems) == 3
    assert "unknown key 'method.adapter_lenn'; did you mean 'method.adapter_len'?" in problems
    with pytest.raises(ConfigError, match=r"method.r=0: the LoRA rank must be >= 1"):
        config_from_dict({"method": {"type": "lora", "r": 0}})
    with pytest.raises(ConfigError, match=r"connector.type='qformer' is not a registered connector; did you mean"):
        config_from_dict({"connector": {"type": "qformer"}})
    cfg = config_from_dict({"method": {"type": "none"}, "connector": {"type": "qformer_tokens", "init_weights": "w"}})
    assert config_to_dict(cfg)["connector"] == {"type": "qformer_tokens", "init_weights": "w"}
    assert config_to_dict(cfg)["method"] == {"type": "none"}


def test_relationship_checks():
    with pytest.raises(ConfigError, match=r"model.vpg_source is required when model.builder=hf"):
        config_from_dict({"model": {"builder": "hf", "llm_source": "x"}})
    with pytest.raises(ConfigError, match=r"warmup_steps=10 must be smaller than train.max_steps=5"):
        config_from_dict({"train": {"max_steps": 5, "warmup_steps": 10}})
    with pytest.raises(ConfigError, match=r"data.world and data.captions"):
        config_from_dict({"data": {"world": "w", "captions": "c.json", "questions": "q.json", "images": "i"}})
    with pytest.raises(ConfigError, match=r"no data"):
        config_from_dict({"data": {"train_split": "train"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("1e-4", 1e-4),
        ("0.5", 0.5),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("[q_proj,v_proj]", ["q_proj", "v_proj"]),
        ("runs/x", "runs/x"),
        ("{cap: 2}", {"cap": 2}),
    ],
)
def test_override_values_parse_like_yaml(text, expected):
    value = parse_override_value(text)
    assert value == expected and type(value) is type(expected)


def test_overrides_apply_and_are_typed(tmp_path: Path):
    cfg = load_config(
        ROOT / "configs/world/vict_lora.yaml",
        [
            "train.max_steps=70",
            "train.lr=3e-4",
            "method.target_modules=[q_proj,k_proj]",
            "train.connector_lr=null",
            "data.ratios.cap=3",
            "train.epochs=2",
            "model.logits_on_labelled_only=false",
        ],
    )
    assert cfg.train.max_steps == 70 and cfg.train.lr == 3e-4 and cfg.train.connector_lr is None
    assert cfg.train.epochs == 2.0 and isinstance(cfg.train.epochs, float)
    assert cfg.method.settings.target_modules == ["q_proj", "k_proj"]
    assert cfg.model.logits_on_labelled_only is False
    assert cfg.data.normalised_ratios()["cap"] == pytest.approx(3 / 7)
    with pytest.raises(ConfigError, match=r"unknown key 'train.max_step'; did you mean 'train.max_steps'"):
        load_config(ROOT / "configs/world/vict_lora.yaml", ["train.max_step=7"])
    with pytest.raises(ConfigError, match=r"not key=value"):
        apply_overrides({}, ["train.max_steps"])
    with pytest.raises(ConfigError, match=r"'train.lr' is a value, not a section"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=1"])


def test_saved_config_round_trips(tmp_path: Path):
    cfg = load_config(ROOT / "configs/world/vict_llama_adapter.yaml", ["train.seed=5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_check_paths_names_the_missing_world_and_the_fix(tmp_path: Path):
    cfg = load_config(None, [f"data.world={tmp_path / 'nope'}"])
    (problem,) = check_paths(cfg)
    assert str(tmp_path / "nope") in problem and "vict data world --out" in problem
    cfg = load_config(ROOT / "configs/llama7b/coco_gqa_vict_lora.yaml")
    problems = check_paths(cfg)
    assert any("captions_train2014.json" in p for p in problems) and any(
        "captions_val2014.json" in p for p in problems
    )


def test_validate_cli(capsys):
    assert main(["validate", str(ROOT / "configs/world/vict_lora.yaml"), "train.max_steps=30"]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["validate", str(ROOT / "configs/world/vict_lora.yaml"), "train.max_stepz=3", "method.rr=2"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train.max_steps'?" in err and "did you mean 'method.r'?" in err
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    out = capsys.readouterr().out
    assert "train.connector_lr" in out and "peak learning rate of the connector" in out
    assert "method.type=llama_adapter" in out and "method.adapter_len" in out
    assert "adaption-prompt tokens per adapted layer" in out and "connector.init_weights" in out


def test_model_tiny_is_bound_against_build_tiny_signature():
    pytest.importorskip("vict.models.builders")
    cfg = load_config(None, ["data.world=w", "model.tiny.llm_arch=opt"])
    assert cfg.model.tiny == {"llm_arch": "opt"}
    with pytest.raises(
        ConfigError, match=r"unknown key 'model.tiny.lm_arch' \(not a build_tiny argument\); did you mean"
    ):
        load_config(None, ["data.world=w", "model.tiny.lm_arch=opt"])
    with pytest.raises(ConfigError, match=r"model.tiny is set but model.builder='hf'"):
        load_config(
            None, ["data.world=w", "model.builder=hf", "model.vpg_source=a", "model.llm_source=b", "model.tiny.seed=1"]
        )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", ".nan"])
def test_non_finite_numbers_are_refused(value: str):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs/world/vict_lora.yaml", [f"train.lr={value}", f"method.dropout={value}"])
    message = str(err.value)
    assert "train.lr=" in message and "method.dropout=" in message and "not a finite number" in message


def test_check_paths_checks_local_model_sources_and_flags_hub_ids(tmp_path: Path, capsys):
    from vict.config import remote_sources
    from vict.models.builders import tiny_sources

    blip2, llm = tiny_sources(tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["model.builder=hf", "data.world=" + str(tmp_path)]
    (tmp_path / "annotations").mkdir()

    def problems(vpg: str, lm: str) -> list[str]:
        return check_paths(load_config(None, [*base, f"model.vpg_source={vpg}", f"model.llm_source={lm}"]))

    assert problems(str(blip2), str(llm)) == []
    missing = problems(str(tmp_path / "no_blip2"), str(empty))
    assert any("model.vpg_source=" in p and "no such folder" in p for p in missing), missing
    assert any("model.llm_source=" in p and "config.json" in p and "tokenizer" in p for p in missing), missing
    cfg = load_config(None, [*base, "model.vpg_source=Salesforce/blip2-opt-2.7b", f"model.llm_source={llm}"])
    assert check_paths(cfg) == [] and remote_sources(cfg) == ["model.vpg_source=Salesforce/blip2-opt-2.7b"]

    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  builder: hf\n  vpg_source: {tmp_path / 'no_blip2'}\n  llm_source: lmsys/vicuna-7b\n")
    assert main(["validate", str(config), f"data.world={tmp_path}", "--check-paths"]) == 2
    assert "no such folder" in capsys.readouterr().err
    config.write_text(
        "model:\n  builder: hf\n  vpg_source: Salesforce/blip2-opt-2.7b\n  llm_source: lmsys/vicuna-7b\n"
    )
    assert main(["validate", str(config), f"data.world={tmp_path}", "--check-paths"]) == 0
    err = capsys.readouterr().err
    assert "model.llm_source=lmsys/vicuna-7b is a hub id: not checked" in err
