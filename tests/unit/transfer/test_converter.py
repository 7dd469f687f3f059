"""VPGTrans's word converter: pairing, fitting, merged projector, and reading only the tensors it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from vict.cli import main
from vict.data.world import generate_world
from vict.models.tokenizer import train_tokenizer
from vict.transfer import (
    fit_converter,
    load_converter,
    load_input_embeddings,
    load_source_projector,
    merge_projector,
    pair_tokens,
    save_converter,
)
from vict.transfer.converter import TokenPairs, mean_cosine
from vict.transfer.embeddings import embedding_key
from vict.zoo.shipped import shipped_zoo

TEXTS = ["a red circle", "a small blue square on the left", "two green triangles", "the big red square"] * 5


def _known_map_pairs(n_vocab: int = 300, d_s: int = 16, d_t: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(n_vocab, d_s, generator=g)
    mapping = torch.randn(d_t, d_s, generator=g)
    target = source @ mapping.T
    ids = torch.randint(n_vocab, (5000,), generator=g)
    held = torch.rand(5000, generator=g) < 0.1
    return source, target, mapping, TokenPairs(ids, ids.clone(), held, texts_used=500, texts_skipped=0)


def test_the_fitted_converter_recovers_a_known_linear_map() -> None:
    source, target, mapping, pairs = _known_map_pairs()
    converter, report = fit_converter(source, target, pairs, epochs=60, lr=2e-2, batch_size=512)
    assert report.cosine_before < 0.5
    assert report.cosine_train > 0.99 and report.cosine_held_out > 0.99
    probe = torch.randn(1000, 16, generator=torch.Generator().manual_seed(7))  # vectors it never saw
    assert mean_cosine(converter, probe, probe @ mapping.T) > 0.99
    assert report.losses[-1] < report.losses[0]


def test_a_converter_on_noise_does_not_fit_held_out_pairs() -> None:
    source, _, _, pairs = _known_map_pairs()
    noise = torch.randn(300, 24, generator=torch.Generator().manual_seed(3))
    pairs.target_ids = torch.randperm(300, generator=torch.Generator().manual_seed(4))[pairs.source_ids]
    _, report = fit_converter(source, noise, pairs, epochs=20, lr=2e-2, batch_size=512)
    assert report.cosine_train < 0.6 and report.cosine_held_out < 0.6


def test_pairs_are_by_position_of_texts_that_split_alike() -> None:
    word = train_tokenizer(TEXTS, kind="wordlevel", vocab_size=100)
    bpe = train_tokenizer(TEXTS, kind="bpe", vocab_size=400)
    texts = ["a red circle", "a red circle circle circle", "zzzz qqqq"]
    pairs = pair_tokens(texts, word, bpe, held_out=0.0)
    n_word = [len(word(t, add_special_tokens=False)["input_ids"]) for t in texts]
    n_bpe = [len(bpe(t, add_special_tokens=False)["input_ids"]) for t in texts]
    same = [a == b for a, b in zip(n_word, n_bpe, strict=True)]
    assert same == [True, True, False]  # unknown words: 2 word-level tokens, 9 BPE bytes
    assert pairs.texts_used == 2 and pairs.texts_skipped == 1
    first = word("a red circle", add_special_tokens=False)["input_ids"]
    assert pairs.source_ids[:3].tolist() == first
    assert pairs.target_ids[:3].tolist() == bpe("a red circle", add_special_tokens=False)["input_ids"]
    assert word.convert_ids_to_tokens(first) == ["▁a", "▁red", "▁circle"]
    with pytest.raises(ValueError, match="same number of tokens"):
        pair_tokens(["zzzz qqqq"], word, bpe)


def test_merged_projector_is_the_source_projector_then_the_converter() -> None:
    torch.manual_seed(0)
    converter, source_proj = nn.Linear(12, 20), nn.Linear(8, 12)
    weight, bias = merge_projector(converter, source_proj.weight.detach(), source_proj.bias.detach())
    assert weight.shape == (20, 8) and bias.shape == (20,)
    x = torch.randn(64, 8)
    with torch.no_grad():
        expected = converter(source_proj(x))
    torch.testing.assert_close(x @ weight.T + bias, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fit the converter on the LM inside this BLIP-2"):
        merge_projector(converter, torch.zeros(7, 8), torch.zeros(7))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    converter = nn.Linear(4, 6)
    save_converter(converter, tmp_path, {"note": 1})
    loaded = load_converter(tmp_path)
    torch.testing.assert_close(loaded.weight, converter.weight)
    assert json.loads((tmp_path / "converter.json").read_text()) == {"note": 1}
    with pytest.raises(FileNotFoundError, match="vict transfer converter"):
        load_converter(tmp_path / "nothing")


def _sharded_llama(path: Path) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, max_shard_size="20KB")
    return model


def test_sharded_checkpoint_reads_only_the_embedding_tensor(tmp_path: Path, monkeypatch) -> None:
    model = _sharded_llama(tmp_path / "llm")
    index = json.loads((tmp_path / "llm" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2  # really sharded
    opened, read = [], []
    real_open = safetensors.safe_open

    class Counting:
        def __init__(self, path, **kwargs):
            opened.append(Path(path).name)
            self.handle = real_open(path, **kwargs)

        def __enter__(self):
            self.inner = self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def keys(self):
            return self.inner.keys()

        def get_tensor(self, key):
            read.append(key)
            return self.inner.get_tensor(key)

    monkeypatch.setattr(safetensors, "safe_open", Counting)
    emb, key = load_input_embeddings(tmp_path / "llm")
    assert key == "model.embed_tokens.weight" and read == [key]
    assert opened == [index["weight_map"][key]]
    torch.testing.assert_close(emb, model.model.embed_tokens.weight.detach())


def test_embedding_names_of_known_layouts() -> None:
    assert embedding_key(["model.decoder.embed_tokens.weight", "lm_head.weight"], "opt") == (
        "model.decoder.embed_tokens.weight"
    )
    t5 = ["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
    assert embedding_key(t5, "t5") == "shared.weight"
    blip2 = ["language_model.model.decoder.embed_tokens.weight", "Qformer.bert.embeddings.word_embeddings.weight"]
    assert embedding_key(blip2, "blip2") == blip2[0]
    with pytest.raises(ValueError, match="no input-embedding tensor"):
        embedding_key(["vision_model.x.weight"], "vit")


def test_source_projector_from_a_blip2_directory_and_a_lavis_file(tmp_path: Path) -> None:
    zoo = shipped_zoo("default")
    weight, bias, name = load_source_projector(zoo.blip2_dir)
    with safetensors.safe_open(str(zoo.blip2_dir / "model.safetensors"), framework="pt") as handle:
        torch.testing.assert_close(weight, handle.get_tensor("language_projection.weight"))
        torch.testing.assert_close(bias, handle.get_tensor("language_projection.bias"))
    assert name == "language_projection"
    lavis = tmp_path / "blip2_pretrained_opt.pth"
    torch.save(
        {"model": {"opt_proj.weight": weight * 2, "opt_proj.bias": bias, "query_tokens": torch.zeros(1)}}, lavis
    )
    w2, _, name2 = load_source_projector(lavis)
    assert name2 == "opt_proj"
    torch.testing.assert_close(w2, weight * 2)
    emb, key = load_input_embeddings(zoo.blip2_dir)  # the BLIP-2's own OPT
    assert key == "language_model.model.decoder.embed_tokens.weight" and emb.shape[1] == weight.shape[0]


def test_cli_fits_the_zoo_converter_on_world_captions(tmp_path: Path, capsys) -> None:
    micro_world = tmp_path / "world"
    generate_world(micro_world, images=40, seed=0)
    zoo = shipped_zoo("default")
    out = tmp_path / "conv"
    argv = ["transfer", "converter", "--source-lm", str(zoo.source_lm_dir), "--target-lm", str(zoo.target_lm_dir)]
    assert main([*argv, "--world", str(micro_world), "--out", str(out), "--epochs", "30"]) == 0
    meta = json.loads((out / "converter.json").read_text())
    assert meta["texts"]["paired"] > 0.5 * meta["texts"]["total"]
    assert meta["fit"]["cosine_train"] > meta["fit"]["cosine_before"] + 0.5
    converter = load_converter(out)
    assert converter.weight.shape == (meta["target_embedding"]["shape"][1], meta["source_embedding"]["shape"][1])
    assert main([*argv, "--texts", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().out
