"""The pretraining stream: deterministic, disjoint from every world, pixels exactly as the saved processor makes
them, labels that match the scenes; and the LM documents built from it."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from PIL import Image

from vict.constants import IGNORE_INDEX
from vict.data.world.render import render_scene
from vict.data.world.scene import COLORS, SHAPES, SIZES, image_rng, sample_scene
from vict.zoo.blip2 import make_processor
from vict.zoo.corpus import QA_TEXT_TEMPLATE, document, stream_documents, world_documents
from vict.zoo.presets import Blip2Spec
from vict.zoo.stream import SceneStream, stream_rng, to_pixels
from vict.zoo.world_text import load_split


def test_stream_is_deterministic_and_fresh() -> None:
    a, b = SceneStream(7, 64).batch(0, 8), SceneStream(7, 64).batch(0, 8)
    assert torch.equal(a.pixels, b.pixels) and a.captions == b.captions
    later = SceneStream(7, 64).batch(4, 4)  # image k does not depend on the batch it is drawn in
    assert torch.equal(later.pixels, a.pixels[4:])
    other = SceneStream(8, 64).batch(0, 8)
    assert not torch.equal(other.pixels, a.pixels)


def test_stream_never_renders_a_world_image(micro_world: Path) -> None:
    # the same seed and index in the world's key space and the stream's give different rngs, scenes and pixels
    for seed in (0, 1):
        for index in range(20):
            assert stream_rng(seed, index, "render").random() != image_rng(seed, index, "render").random()
    world_images = {Image.open(p).tobytes() for p in (micro_world / "images").glob("*.png")}
    stream = SceneStream(0, 64)
    assert not world_images & {stream.image(i).tobytes() for i in range(200)}


def test_pixels_equal_the_saved_processor(micro_world: Path) -> None:
    from vict.models.tokenizer import train_tokenizer

    processor = make_processor(train_tokenizer(["a b c"], kind="wordlevel"), Blip2Spec(image_size=48))
    images = [Image.open(micro_world / "images" / f"{k}.png").convert("RGB") for k in (1, 2)]
    ours = to_pixels(images, 48)
    theirs = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    same_size = to_pixels(images, 64)
    theirs64 = make_processor(train_tokenizer(["a"], kind="wordlevel"), Blip2Spec(image_size=64)).image_processor(
        images=images, return_tensors="pt"
    )["pixel_values"]
    torch.testing.assert_close(same_size, theirs64, atol=1e-5, rtol=0)


def test_cell_labels_match_the_scenes() -> None:
    batch = SceneStream(3, 64).batch(0, 16, text=False)
    for i, scene in enumerate(batch.scenes):
        cells = {o.row * 3 + o.col: o for o in scene.objects}
        for cell in range(9):
            occupied = int(batch.labels["occupied"][i, cell])
            assert occupied == (cell in cells)
            if cell in cells:
                o = cells[cell]
                assert batch.labels["colour"][i, cell] == list(COLORS).index(o.color)
                assert batch.labels["shape"][i, cell] == SHAPES.index(o.shape)
                assert batch.labels["size"][i, cell] == SIZES.index(o.size)
            else:
                assert batch.labels["shape"][i, cell] == IGNORE_INDEX


def test_render_matches_the_world_renderer() -> None:
    stream = SceneStream(5, 64)
    scene = sample_scene(stream_rng(5, 2, "scene"), image_id=2)
    expected = render_scene(scene, 64, stream_rng(5, 2, "render"))
    assert stream.image(2).tobytes() == expected.tobytes()


def test_documents_are_one_caption_or_read_the_dense_caption() -> None:
    docs = stream_documents(0, 200)
    assert docs == stream_documents(0, 200)
    batch = SceneStream(0, 1).batch(0, 200, images=False)
    alt = qa = reasoned = 0
    for doc, caps, questions in zip(docs, batch.captions, batch.questions, strict=True):
        if doc in caps:
            alt += 1
            continue
        qa += 1
        # a reading document: the dense caption (which states every answer) first, the short answer last
        assert doc.startswith(caps[0] + " "), doc
        asked = [q for q in questions if doc.endswith(QA_TEXT_TEMPLATE.format(q.question, q.answer))]
        assert asked, doc
        middle = doc[len(caps[0]) + 1 :]
        sentences = [f"{q.question} {q.full_answer}" for q in questions if f"{q.question} {q.full_answer}" in middle]
        # the asked question is not answered before
        assert f"{asked[0].question} {asked[0].full_answer}" not in sentences
        reasoned += len(sentences)
    assert 20 < alt < 70 and qa > 130  # about a fifth are alt-text captions
    assert reasoned > qa  # several reasoned answers per reading document on average
    assert any(len(d.split(". ")) > 3 for d in docs)  # text goes on after a full stop


def test_world_documents_are_held_out_and_deterministic(micro_world: Path) -> None:
    images = load_split(micro_world, "test")
    docs = world_documents(images)
    assert docs == world_documents(images) and len(docs) == len(images)
    assert document(["A cap."], [], random.Random(0)) == "A cap."
    for doc, im in zip(docs, images, strict=True):
        assert doc in im.captions or any(doc.endswith(f"Short answer: {a}") for _, a, _ in im.qas)


def test_the_reading_stage_puts_the_image_where_a_reading_document_has_its_dense_caption() -> None:
    from vict.zoo.blip2 import reading_stage_texts

    batch = SceneStream(3, 1).batch(0, 200, images=False)
    texts = reading_stage_texts(batch, random.Random(0), caption_p=0.5)
    assert texts == reading_stage_texts(batch, random.Random(0), caption_p=0.5)
    captions = reading = 0
    for text, caps, questions in zip(texts, batch.captions, batch.questions, strict=True):
        if text == caps[0]:
            captions += 1
            continue
        reading += 1
        assert caps[0] not in text  # the image stands for the dense caption: the text never states it
        assert any(text.endswith(QA_TEXT_TEMPLATE.format(q.question, q.answer)) for q in questions), text
        # questions of this image, each answered by a sentence, then the asked one (vict.zoo.corpus.reading_text)
        assert text.startswith(("Question: ", *(f"{q.question} " for q in questions))), text
    assert 70 < captions < 130 and reading == 200 - captions
    assert all(t == c[0] for t, c in zip(reading_stage_texts(batch, random.Random(0), 1.0), batch.captions))
    assert not set(reading_stage_texts(batch, random.Random(0), 0.0)) & {c[0] for c in batch.captions}


def test_a_reading_document_is_its_dense_caption_then_its_reading_text() -> None:
    from vict.zoo.corpus import ALT_TEXT_P, reading_text

    batch = SceneStream(4, 1).batch(0, 50, images=False)
    for k, (caps, questions) in enumerate(zip(batch.captions, batch.questions, strict=True)):
        qas = [(q.question, q.answer, q.full_answer) for q in questions]
        doc, rng = document(caps, qas, random.Random(k)), random.Random(k)
        if rng.random() < ALT_TEXT_P:
            assert doc in caps
        else:
            assert doc == f"{caps[0]} {reading_text(qas, rng)}"
