"""Text corpora through `datasets`: local parquet / jsonl / txt files tokenized with the model's tokenizer into one
stream (documents in order, each followed by EOS), cached, identical across runs; bad sources named in the error."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hooked_bilinear.errors import DatasetError
from hooked_bilinear.making.corpus import Corpus, load_corpus
from hooked_bilinear.making.data import PackedSequences
from tests.distributed_runs import TEXTS, tokenizer


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


def expected_stream(texts: list[str], tok) -> list[int]:
    """The stream computed independently: each document's ids, then EOS."""
    ids: list[int] = []
    for text in texts:
        ids += tok(text)["input_ids"] + [tok.eos_token_id]
    return ids


def write(kind: str, folder, texts: list[str]):
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        pq.write_table(pa.table({"story": texts, "n": list(range(len(texts)))}), folder / "a.parquet")
        return Corpus(str(folder / "a.parquet"), text_column="story")
    if kind == "jsonl":
        half = len(texts) // 2  # a folder of two files, read in name order
        for name, part in (("0.jsonl", texts[:half]), ("1.jsonl", texts[half:])):
            (folder / name).write_text("".join(json.dumps({"story": t, "n": 1}) + "\n" for t in part))
        return Corpus(str(folder), text_column="story")
    (folder / "a.txt").write_text("\n".join(texts) + "\n")
    return Corpus(str(folder / "a.txt"))


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "txt"])
def test_local_corpus_is_tokenized_packed_and_identical_across_runs(tmp_path, tok, kind):
    corpus = write(kind, tmp_path / "data", TEXTS)
    stream = load_corpus(corpus, tok, tmp_path / "cache")
    assert stream.dtype == np.int32 and stream.tolist() == expected_stream(TEXTS, tok)
    again = load_corpus(corpus, tok, tmp_path / "cache")  # from the cache
    fresh = load_corpus(corpus, tok, tmp_path / "other-cache")  # tokenized anew
    assert np.array_equal(again, stream) and np.array_equal(fresh, stream)
    a, b = PackedSequences(stream, 16, seed=0), PackedSequences(fresh, 16, seed=0)
    for step in (0, 5, 40):  # 40: past the first epoch
        assert a.batch(step, 4).tolist() == b.batch(step, 4).tolist()


def test_a_changed_file_is_tokenized_again(tmp_path, tok):
    corpus = write("parquet", tmp_path / "data", TEXTS)
    first = load_corpus(corpus, tok, tmp_path / "cache")
    write("parquet", tmp_path / "data", TEXTS[:10])
    assert load_corpus(corpus, tok, tmp_path / "cache").tolist() == expected_stream(TEXTS[:10], tok) != first.tolist()


def test_bad_sources_are_named(tmp_path, tok):
    corpus = write("parquet", tmp_path / "data", TEXTS)
    with pytest.raises(DatasetError, match=r"no column 'text' \(its columns: \['story', 'n'\]\).*--text-column"):
        load_corpus(Corpus(corpus.source), tok, tmp_path / "cache")
    with pytest.raises(DatasetError, match="does not exist"):
        load_corpus(Corpus(str(tmp_path / "missing.jsonl")), tok, tmp_path / "cache")
    with pytest.raises(DatasetError, match="HF_HUB_OFFLINE"):  # conftest switches the Hub off: a name is not read
        load_corpus(Corpus("HuggingFaceFW/fineweb", name="sample-10BT"), tok, tmp_path / "cache")
    with pytest.raises(DatasetError, match="needs a tokenizer"):
        load_corpus(corpus, None, tmp_path / "cache")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.txt").write_text("x\n")
    (tmp_path / "mixed" / "b.jsonl").write_text('{"text": "y"}\n')
    with pytest.raises(DatasetError, match="mixes file kinds"):
        load_corpus(Corpus(str(tmp_path / "mixed")), tok, tmp_path / "cache")


def test_streamed_corpus_reads_only_the_tokens_needed(tmp_path, tok, monkeypatch):
    """The Hub path (load_dataset(..., streaming=True)) on a local folder, which datasets streams without a network:
    documents in order, cut at max_tokens."""
    from hooked_bilinear.making import corpus as corpus_module

    write("jsonl", tmp_path / "data", TEXTS)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the guard reads these; datasets itself stays offline (read at import)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    final = tmp_path / "streamed.npy"
    corpus_module._streamed_tokens(Corpus(str(tmp_path / "data"), text_column="story"), tok, 500, final)
    assert np.load(final).tolist() == expected_stream(TEXTS, tok)[:500]
