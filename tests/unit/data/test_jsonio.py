"""The incremental JSON reader: same result as json.load, positions in errors, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vict.data.jsonio import iter_array_items, iter_object_items, load_json
from vict.data.policy import MalformedJSONError

DOC = {
    "1": {"question": "Is the ünïcode “quoted” \\ string fine?", "n": 12345678901234567890, "f": -1.5e-7},
    "2": {"nested": [1, [2, {"a": None, "b": True, "c": False}]], "empty": {}, "e": []},
    "3": 'a plain string with "escapes" and \n newline',
    "4": 0,
}


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_object_items_equal_json_load(tmp_path: Path, indent: int | None, chunk: int) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(DOC, indent=indent, ensure_ascii=False), encoding="utf-8")
    assert dict(iter_object_items(path, chunk_chars=chunk)) == DOC


@pytest.mark.parametrize("chunk", [1, 2, 5, 1 << 20])
def test_array_items_equal_json_load(tmp_path: Path, chunk: int) -> None:
    items = [1, 22, 333, 4444.5, "x", {"k": [1, 2]}, None, 10**20]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    assert list(iter_array_items(path, chunk_chars=chunk)) == items


def test_empty_containers(tmp_path: Path) -> None:
    (tmp_path / "o.json").write_text(" {\n} \n")
    (tmp_path / "a.json").write_text("[]")
    assert list(iter_object_items(tmp_path / "o.json")) == []
    assert list(iter_array_items(tmp_path / "a.json")) == []


@pytest.mark.parametrize(
    "broken",
    [
        '{"1": {"a": 1},\n "2": {"a": 2,,}}',  # double comma inside a value
        '{"1": {"a": 1}\n "2": {"a": 2}}',  # missing comma between members
        '{"1": {"a": 1},\n "2" {"a": 2}}',  # missing colon
        '{"1": {"a": 1},\n\n "2": {"a": tru}}',  # bad literal
    ],
)
@pytest.mark.parametrize("chunk", [4, 1 << 20])
def test_malformed_positions_match_json(tmp_path: Path, broken: str, chunk: int) -> None:
    path = tmp_path / "bad.json"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads(broken)
    with pytest.raises(MalformedJSONError) as ours:
        list(iter_object_items(path, chunk_chars=chunk))
    assert f"{path}:{ref.value.lineno}:" in str(ours.value)
    with pytest.raises(MalformedJSONError, match=rf"{path}:{ref.value.lineno}:{ref.value.colno}:"):
        load_json(path)


def test_truncated_file_and_extra_data(tmp_path: Path) -> None:
    text = json.dumps(DOC)
    (tmp_path / "t.json").write_text(text[: len(text) // 2])
    with pytest.raises(MalformedJSONError, match=r"t\.json:1:"):
        list(iter_object_items(tmp_path / "t.json", chunk_chars=8))
    (tmp_path / "x.json").write_text(text + " {}")
    with pytest.raises(MalformedJSONError, match="extra data"):
        list(iter_object_items(tmp_path / "x.json"))
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(MalformedJSONError, match="expected '\\{'"):
        list(iter_object_items(tmp_path / "l.json"))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        list(iter_object_items(tmp_path / "nope.json"))
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        load_json(tmp_path / "nope.json")


_MEASURE = textwrap.dedent(
    """
    import json, sys
    from vict.data.gqa import iter_gqa_questions

    def peak_mb():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

    path, mode = sys.argv[1], sys.argv[2]
    before = peak_mb()
    if mode == "stream":
        n = sum(1 for _ in iter_gqa_questions(path))
    else:
        with open(path) as f:
            n = len(json.load(f))
    print(n, peak_mb() - before)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_streaming_peak_memory_is_bounded(tmp_path: Path) -> None:
    """A ~150 MB GQA-shaped file: streaming adds a few MB of peak RSS where json.load adds hundreds."""
    path = tmp_path / "train_balanced_questions.json"
    record = {
        "semantic": [{"operation": "select", "dependencies": [], "argument": "pond (1039893)"}] * 3,
        "entailed": [], "equivalent": ["x"], "question": "Are there carts near the pond?", "imageId": "1159529",
        "isBalanced": True, "groups": {"global": None, "local": "13-pond_cart"}, "answer": "yes",
        "semanticStr": "select: pond (1039893)->relate: cart,near,s (1039872) [0]->exist: ? [1]",
        "annotations": {"answer": {}, "question": {"2": "1039872"}, "fullAnswer": {"4": "1039872"}},
        "types": {"detailed": "existRelS", "semantic": "rel", "structural": "verify"},
        "fullAnswer": "Yes, there is a cart near the pond.",
    }  # fmt: skip
    n = 200_000
    body = json.dumps(record)
    with path.open("w") as f:
        f.write("{")
        for i in range(n):
            f.write(f'{"," if i else ""}"{i}": {body}')
        f.write("}")
    results = {}
    for mode in ("stream", "json"):
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(path), mode], capture_output=True, text=True, check=True
        )
        count, mb = out.stdout.split()
        assert int(count) == n
        results[mode] = float(mb)
    print(f"peak RSS increase on a {path.stat().st_size / 1e6:.0f} MB file: {results}")
    assert results["stream"] < 30, results
    assert results["json"] > 5 * results["stream"], results
