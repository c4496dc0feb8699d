"""Tokenizers (sentencepiece, Hugging Face tokenizer.json) and the paper's prompt templates.

Plain Python + numpy (no jax), so reward workers and data tools import it cheaply.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import jinja2
import jinja2.ext
import numpy as np
import sentencepiece as spm
from jinja2.sandbox import ImmutableSandboxedEnvironment

from r1jax.config import PROMPT_TEMPLATES

__all__ = ["SPECIAL_TOKENS", "train_sentencepiece", "SentencePieceTokenizer", "HFTokenizer", "load_tokenizer",
           "R1_ZERO_TEMPLATE", "render_r1_zero", "render_chat", "render_cold_start", "parse_cold_start",
           "ChatTemplate", "PROMPT_TEMPLATES", "render_prompt", "prompt_tokens"]

# Pieces the templates need as single tokens (so rewards can find tags by id and a tag is
# never split across a sampling boundary).
SPECIAL_TOKENS = ("<think>", "</think>", "<answer>", "</answer>", "|special_token|")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
_MIN_VOCAB = 256 + 4 + len(SPECIAL_TOKENS) + 8  # byte fallback pieces + control + specials + a few merges


class _Common:
    """Batch helpers shared by both tokenizers (they only need encode/decode/pad_id)."""

    pad_id: int
    bos_id: int | None
    chat_template: "ChatTemplate | None" = None  # the model's own (HF tokenizer_config.json)

    @property
    def bos(self) -> list[int]:
        """What every sequence starts with: [bos_id], or nothing for a tokenizer without a BOS
        (Qwen's): the one rule all stages use, so no stage puts a None among the ids."""
        return [] if self.bos_id is None else [self.bos_id]

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode_batch(self, batch: Iterable[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def pad_batch(self, seqs: Sequence[Sequence[int]], length: int | None = None, left: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
        """int32 tokens [B, L] and bool mask [B, L]; left padding (prompts for sampling) by default."""
        length = max((len(s) for s in seqs), default=0) if length is None else length
        tokens = np.full((len(seqs), length), self.pad_id, np.int32)
        mask = np.zeros((len(seqs), length), bool)
        for i, s in enumerate(seqs):
            if len(s) > length:
                raise ValueError(f"sequence {i} has {len(s)} tokens, more than the padded length {length}")
            sl = slice(length - len(s), length) if left else slice(0, len(s))
            tokens[i, sl] = s
            mask[i, sl] = True
        return tokens, mask


class SentencePieceTokenizer(_Common):
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"sentencepiece model {self.path} does not exist")
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(self.path))
        except Exception as e:  # sentencepiece raises OSError/RuntimeError with little context
            raise ValueError(f"{self.path} is not a valid sentencepiece model: {e}") from None
        self.vocab_size = self._sp.GetPieceSize()
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None
        self.eos_id = self._sp.eos_id()
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.eos_id

    def encode(self, text: str) -> list[int]:
        return self._sp.EncodeAsIds(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.DecodeIds([int(i) for i in ids])

    def token_id(self, piece: str) -> int:
        i = self._sp.PieceToId(piece)
        if i == self._sp.unk_id() and piece != self._sp.IdToPiece(i):
            raise KeyError(f"{piece!r} is not a single token of {self.path}")
        return i


class HFTokenizer(_Common):
    """A Hugging Face `tokenizer.json` (e.g. of an imported Qwen2.5 / Llama 3 checkpoint)."""

    def __init__(self, path: str | os.PathLike, bos_token: str | None = None, eos_token: str | None = None,
                 pad_token: str | None = None):
        try:
            import tokenizers
        except ImportError:
            raise ImportError("HF tokenizers need the 'tokenizers' package: pip install 'r1jax[hf]'") from None
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file} does not exist")
        self.path = file
        self._tok = tokenizers.Tokenizer.from_file(str(file))
        cfg_file = file.parent / "tokenizer_config.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}

        def token(given, key):
            value = given if given is not None else cfg.get(key)
            return value.get("content") if isinstance(value, dict) else value

        bos, eos, pad = token(bos_token, "bos_token"), token(eos_token, "eos_token"), token(pad_token, "pad_token")
        if eos is None:
            raise ValueError(f"{file}: no eos token given and none in {cfg_file.name}")
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.bos_id = None if bos is None else self.token_id(bos)  # Qwen has no BOS
        self.eos_id = self.token_id(eos)
        self.pad_id = self.eos_id if pad is None else self.token_id(pad)
        if isinstance(cfg.get("chat_template"), str):
            names = ("bos_token", "eos_token", "unk_token", "pad_token")
            self.chat_template = ChatTemplate(cfg["chat_template"], tuple(
                (k, v) for k in names if (v := token(None, k)) is not None))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_id(self, piece: str) -> int:
        i = self._tok.token_to_id(piece)
        if i is None:
            raise KeyError(f"{piece!r} is not a single token of {self.path}")
        return i


def train_sentencepiece(texts: Iterable[str], path: str | os.PathLike, vocab_size: int = 2048,
                        model_type: str = "bpe", extra_symbols: Sequence[str] = ()) -> SentencePieceTokenizer:
    """Train a sentencepiece model on `texts`, write it to `path` and load it. `extra_symbols`
    become single pieces (spaces allowed), e.g. the constant text of a prompt template.

    Settings chosen for RL on generated text: identity normalisation and no dummy prefix so
    decode(a + b) == decode(a) + decode(b) (prompt and completion are decoded apart), digits
    split (arithmetic), byte fallback and full character coverage (Chinese, anything unseen).
    """
    if vocab_size < _MIN_VOCAB:
        raise ValueError(f"vocab_size {vocab_size} is too small: byte fallback and special tokens need at least "
                         f"{_MIN_VOCAB}")
    lines = [t for t in texts if t]
    if not lines:
        raise ValueError("train_sentencepiece: the text iterator yielded no text")
    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type=model_type,
        # sentencepiece sees spaces as U+2581, so a symbol with spaces must be written that way
        user_defined_symbols=[s.replace(" ", "\u2581") for s in (*SPECIAL_TOKENS, *extra_symbols)],
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False, split_digits=True, hard_vocab_limit=False,
        allow_whitespace_only_pieces=True, num_threads=2, input_sentence_size=200_000,
        shuffle_input_sentence=True, max_sentence_length=16384, minloglevel=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(model.getvalue())
    os.replace(tmp, path)
    return SentencePieceTokenizer(path)


def load_tokenizer(path: str | os.PathLike) -> SentencePieceTokenizer | HFTokenizer:
    """A sentencepiece `.model` file, or a `tokenizer.json` (file or the directory holding it)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".model":
        return SentencePieceTokenizer(path)
    if path.name == "tokenizer.json" or (path.is_dir() and (path / "tokenizer.json").is_file()):
        return HFTokenizer(path)
    raise ValueError(f"{path}: expected a sentencepiece .model file or a tokenizer.json (or its directory)")


# ----------------------------------------------------------------------------- templates

# DeepSeek-R1 paper, Table 1, verbatim; "prompt" is replaced by the question.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {prompt}. Assistant:")


def render_r1_zero(prompt: str) -> str:
    # str.replace, not str.format: prompts contain LaTeX braces such as \frac{1}{2}.
    return R1_ZERO_TEMPLATE.replace("{prompt}", prompt)


def render_chat(prompt: str, system: str | None = None) -> str:
    """R1-style chat turn whose response opens the reasoning block:

        [system + "\\n"] "User: " prompt "\\nAssistant: <think>\\n"
    """
    head = f"{system}\n" if system else ""
    return f"{head}User: {prompt}\nAssistant: <think>\n"


def render_cold_start(reasoning: str, summary: str) -> str:
    """The paper's cold-start output format: |special_token|<reasoning_process>|special_token|<summary>."""
    return f"|special_token|{reasoning}|special_token|{summary}"


def parse_cold_start(text: str) -> tuple[str, str]:
    parts = text.split("|special_token|")
    if len(parts) != 3 or parts[0].strip():
        raise ValueError("not in the cold-start format '|special_token|<reasoning>|special_token|<summary>': "
                         f"found {len(parts) - 1} '|special_token|' markers in {text[:80]!r}")
    return parts[1], parts[2]


# ----------------------------------------------------------------------------- a model's chat template

def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    """A chat template compiled as `transformers` compiles it: a sandbox (a template cannot reach
    Python), trim_blocks and lstrip_blocks, loop controls, and its `tojson`, `raise_exception`
    and `strftime_now`."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(source)


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """A model's Jinja chat template (`tokenizer_config.json`'s "chat_template"), rendered as
    `transformers`' `apply_chat_template(..., tokenize=False)` renders it; `special` holds the
    tokens it may name (bos_token, eos_token, ...)."""

    source: str
    special: tuple[tuple[str, str], ...] = ()

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        """messages: [{"role": "system" | "user" | "assistant", "content": str}, ...]."""
        return _compile(self.source).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                            **dict(self.special))

    def assistant_spans(self, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and the character spans of its assistant turns (the text
        each assistant message adds after the generation prompt before it): the tokens an SFT
        loss trains on. An error if the template rewrites earlier turns when a turn is added
        (so no span can be cut out of the whole)."""
        text, spans = self.render(messages), []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before, upto = self.render(messages[:i], add_generation_prompt=True), self.render(messages[:i + 1])
            if not (upto.startswith(before) and text.startswith(upto)):
                raise ValueError(f"the chat template renders turn {i} (assistant) differently once more turns follow, "
                                 "so its tokens cannot be told apart; train on single-turn records")
            spans.append((len(before), len(upto)))
        return text, spans


def render_prompt(tok, question: str, template: str) -> str:
    """A question as the text a policy continues: the paper's R1-Zero template, R1's chat turn
    opening the reasoning block, the model's own chat template (a user turn and the generation
    prompt), or the raw question ('none')."""
    if template == "r1-zero":
        return render_r1_zero(question)
    if template == "r1-chat":
        return render_chat(question)
    if template == "none":
        return question
    if template == "model":
        if tok.chat_template is None:
            raise ValueError(f"template 'model': {tok.path} has no chat template (tokenizer_config.json's "
                             "'chat_template'); use r1-zero or r1-chat")
        return tok.chat_template.render([{"role": "user", "content": question}], add_generation_prompt=True)
    raise ValueError(f"unknown prompt template {template!r}; valid: {', '.join(PROMPT_TEMPLATES)}")


def prompt_tokens(tok, question: str, template: str) -> list[int]:
    """`render_prompt`'s text as token ids: BOS (if the tokenizer has one) + the text; a model's
    chat template writes its own BOS where it wants one, so 'model' adds none (as
    `transformers`' apply_chat_template(tokenize=True) does)."""
    ids = tok.encode(render_prompt(tok, question, template))
    return ids if template == "model" else [*tok.bos, *ids]
