"""Tokenizers: trained sentencepiece and a locally built HF tokenizer.json; templates."""

import numpy as np
import pytest

from r1jax import tokenizer as T


def _corpus():
    lines = []
    for a in range(60):
        for b in (3, 17, 42):
            lines.append(f"What is {a} + {b}? The answer is {a + b}.")
    lines += ["小明有 3 个苹果，又买了 5 个。", "一共有多少个苹果？答案是 8。"] * 20
    lines += [T.render_r1_zero("What is 2+3?") + " <think> 2+3=5 </think> <answer> 5 </answer>"] * 10
    return lines


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
    return T.train_sentencepiece(_corpus(), tmp_path_factory.mktemp("sp") / "tok.model", vocab_size=400)


def test_special_tokens_are_single_pieces(sp):
    assert (sp.pad_id, T.UNK_ID, sp.bos_id, sp.eos_id) == (0, 1, 2, 3)
    for piece in T.SPECIAL_TOKENS:
        ids = sp.encode(piece)
        assert ids == [sp.token_id(piece)], piece
    with pytest.raises(KeyError, match="not a single token"):
        sp.token_id("<thinking>")


@pytest.mark.parametrize("text", ["  two  spaces\n\nnewlines\tand tab ", "12345 + 67890 = 80235",
                                  "小明有 3 个苹果", "unseen: λ → ∞ 🙂", r"\frac{1}{2} and {braces}",
                                  "<think> a </think><answer>5</answer>"])
def test_round_trip(sp, text):
    assert sp.decode(sp.encode(text)) == text


def test_concatenation_and_digits(sp):
    a, b = "Assistant: <think> 12 + 30", " = 42 </think>"
    assert sp.decode(sp.encode(a) + sp.encode(b)) == a + b
    digits = sp.encode("9876")
    assert len(digits) == 4 and [sp.decode([d]) for d in digits] == ["9", "8", "7", "6"]
    assert sp.decode(np.array(digits)) == "9876"


def test_reload_and_errors(sp, tmp_path):
    again = T.load_tokenizer(sp.path)
    text = "What is 7 + 3? 小明"
    assert again.encode(text) == sp.encode(text) and again.vocab_size == sp.vocab_size
    with pytest.raises(ValueError, match="too small"):
        T.train_sentencepiece(_corpus(), tmp_path / "x.model", vocab_size=100)
    with pytest.raises(ValueError, match="no text"):
        T.train_sentencepiece([], tmp_path / "x.model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        T.SentencePieceTokenizer(tmp_path / "missing.model")
    with pytest.raises(ValueError, match="expected a sentencepiece"):
        T.load_tokenizer(tmp_path)


def test_hf_tokenizer_json(qwen_like_tokenizer, sp):
    specials = ["<|endoftext|>", "<think>", "</think>", "<answer>", "</answer>"]
    hf = T.load_tokenizer(qwen_like_tokenizer)
    assert isinstance(hf, T.HFTokenizer)
    assert hf.bos_id is None and hf.eos_id == hf.pad_id == hf.token_id("<|endoftext|>")
    assert hf.bos == [] and sp.bos == [T.BOS_ID]  # what every stage starts a sequence with
    for text in ["What is 12 + 30? The answer is 42.", "小明有 3 个苹果", "<think> x </think><answer>5</answer>"]:
        assert hf.decode(hf.encode(text)) == text
    for piece in specials:
        assert hf.encode(piece) == [hf.token_id(piece)]


def test_pad_batch(sp):
    tokens, mask = sp.pad_batch([[5, 6, 7], [8]])
    np.testing.assert_array_equal(tokens, [[5, 6, 7], [0, 0, 8]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1]])
    tokens, mask = sp.pad_batch([[5, 6], [8]], length=4, left=False)
    np.testing.assert_array_equal(tokens, [[5, 6, 0, 0], [8, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 0, 0, 0]])
    assert tokens.dtype == np.int32 and mask.dtype == bool
    with pytest.raises(ValueError, match="sequence 1 has 3 tokens"):
        sp.pad_batch([[1], [1, 2, 3]], length=2)


def test_templates():
    assert T.render_r1_zero("What is 2+3?") == (
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
        "The assistant first thinks about the reasoning process in the mind and then provides the user with "
        "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
        "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
        "</answer>. User: What is 2+3?. Assistant:")
    assert r"User: Simplify \frac{1}{2}+{x}. Assistant:" in T.render_r1_zero(r"Simplify \frac{1}{2}+{x}")
    assert T.render_chat("Hi", system="Be brief.") == "Be brief.\nUser: Hi\nAssistant: <think>\n"
    text = T.render_cold_start("step 1\nstep 2", "The answer is 4.")
    assert text == "|special_token|step 1\nstep 2|special_token|The answer is 4."
    assert T.parse_cold_start(text) == ("step 1\nstep 2", "The answer is 4.")
    with pytest.raises(ValueError, match="cold-start format"):
        T.parse_cold_start("no markers here")
