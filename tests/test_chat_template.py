"""A model's own chat template (tokenizer_config.json's Jinja "chat_template") renders exactly as
`transformers`' apply_chat_template renders it, on templates written here in the styles of
Qwen2.5, Llama 3 and DeepSeek-R1-Distill; the assistant turns' spans are what chat SFT trains on."""

import json
import shutil

import pytest

from r1jax.tokenizer import ChatTemplate, load_tokenizer, render_prompt, render_r1_zero

transformers = pytest.importorskip("transformers", reason="the parity reference is transformers' apply_chat_template")

QWEN_STYLE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.role == 'system' and loop.first %}{%- continue %}{%- endif %}\n"
    "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n")

LLAMA_STYLE = (
    "{{- bos_token }}\n"
    "{%- for message in messages %}\n"
    "    {%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{- raise_exception('unknown role ' + message['role']) }}{%- endif %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}\n")

R1_DISTILL_STYLE = (
    "{% set ns = namespace(system='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system = message['content'] %}"
    "{%- endif %}{%- endfor %}"
    "{{ bos_token }}{{ ns.system }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{%- if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + eos_token }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "What is 3 + 4?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "  Compute 12 - 5.  "}],
    [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "<think> 2 + 2 = 4 </think> 4"},
     {"role": "user", "content": "小明有 3 个苹果，又买了 5 个。一共有多少个？"}],
]
SPECIAL = {"bos_token": "<|begin_of_text|>", "eos_token": "<|endoftext|>"}


@pytest.fixture(scope="module")
def hf_tokenizer(qwen_like_tokenizer):
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(qwen_like_tokenizer / "tokenizer.json"), **SPECIAL)


@pytest.mark.parametrize("template", [QWEN_STYLE, LLAMA_STYLE, R1_DISTILL_STYLE], ids=["qwen", "llama", "r1-distill"])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_renders_as_transformers_does(hf_tokenizer, template, generation_prompt):
    ours = ChatTemplate(template, tuple(SPECIAL.items()))
    for messages in CONVERSATIONS:
        want = hf_tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                add_generation_prompt=generation_prompt)
        assert ours.render(messages, add_generation_prompt=generation_prompt) == want


def test_a_stage_tokenizer_carries_its_models_template(qwen_like_tokenizer, tmp_path, hf_tokenizer):
    """HFTokenizer reads "chat_template" and the special tokens from tokenizer_config.json, and
    `--template model` renders a question as a user turn followed by the generation prompt."""
    shutil.copy(qwen_like_tokenizer / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None, "chat_template": QWEN_STYLE}))
    tok = load_tokenizer(tmp_path)
    messages = [{"role": "user", "content": "What is 3 + 4?"}]
    want = hf_tokenizer.apply_chat_template(messages, chat_template=QWEN_STYLE, tokenize=False,
                                            add_generation_prompt=True)
    assert render_prompt(tok, "What is 3 + 4?", "model") == want
    assert render_prompt(tok, "What is 3 + 4?", "r1-zero") == render_r1_zero("What is 3 + 4?")
    with pytest.raises(ValueError, match="unknown prompt template 'chat'; valid: r1-zero, r1-chat, model, none"):
        render_prompt(tok, "x", "chat")


def test_a_template_without_one_is_a_clear_error(tmp_path):
    from r1jax.tasks.world import world_corpus
    from r1jax.tokenizer import train_sentencepiece
    tok = train_sentencepiece([p + " " + r for p, r in world_corpus(200, 0)], tmp_path / "tokenizer.model", 512)
    with pytest.raises(ValueError, match="tokenizer.model has no chat template"):
        render_prompt(tok, "What is 3 + 4?", "model")


@pytest.mark.parametrize("template", [QWEN_STYLE, LLAMA_STYLE])
def test_assistant_spans_cover_the_assistant_turns_only(template):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"},
                {"role": "assistant", "content": "<think> 2 + 2 = 4 </think> 4"},
                {"role": "user", "content": "3 + 3?"}, {"role": "assistant", "content": "6"}]
    text, spans = ChatTemplate(template, tuple(SPECIAL.items())).assistant_spans(messages)
    assert len(spans) == 2
    trained = [text[a:b] for a, b in spans]
    assert trained[0].startswith("<think> 2 + 2 = 4 </think> 4") and trained[1].startswith("6")
    assert all("2 + 2?" not in t and "Be brief." not in t for t in trained)  # no user or system text


def test_a_template_that_rewrites_earlier_turns_is_refused():
    """R1-Distill's template drops an earlier turn's reasoning once the conversation goes on, so
    the first assistant turn's tokens are not in the whole; refuse instead of mis-masking."""
    messages = CONVERSATIONS[2] + [{"role": "assistant", "content": "<think> 3 + 5 </think> 8"}]
    with pytest.raises(ValueError, match="renders turn 1 \\(assistant\\) differently once more turns follow"):
        ChatTemplate(R1_DISTILL_STYLE, tuple(SPECIAL.items())).assistant_spans(messages)


def test_multi_turn_chat_sft_trains_on_every_assistant_turn_only(qwen_like_tokenizer, tmp_path, hf_tokenizer):
    """A conversation of two exchanges in an SFT file: its tokens are transformers' own
    apply_chat_template(tokenize=True) ids, and the loss covers exactly the two assistant turns
    (their text and end-of-turn marker), never the system or user text. The same file with an
    R1 template is an error naming the line."""
    from r1jax import data
    from r1jax.stages.lm import encode_sft
    shutil.copy(qwen_like_tokenizer / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None, "chat_template": QWEN_STYLE}))
    tok = load_tokenizer(tmp_path)
    talk = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"},
            {"role": "assistant", "content": "<think> 2 + 2 = 4 </think> 4"},
            {"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "6"}]
    single = [{"role": "user", "content": "What is 3 + 4?"}, {"role": "assistant", "content": "7"}]
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": single}) + "\n" + json.dumps({"messages": talk}) + "\n")
    encoded = encode_sft(path, tok, 256, "SFTConfig.seq_len", "model")
    for (ids, spans), messages in zip(encoded, (single, talk)):
        assert ids == hf_tokenizer.apply_chat_template(messages, chat_template=QWEN_STYLE, tokenize=True)["input_ids"]
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert [tok.decode(ids[a:b]) for a, b in spans] == [a + "<|im_end|>\n" for a in answers]
    ids, spans = encoded[1]
    batch = next(iter(data.lm_batches([ids], seq_len=256, batch_size=1, pad_id=tok.pad_id, seed=0,
                                      loss_spans=[spans], split_hosts=False)))
    trained = batch["loss_mask"][0] > 0
    assert trained.sum() == sum(b - a for a, b in spans)
    untrained = tok.decode([t for t, m in zip(batch["tokens"][0][:len(ids)], trained[:len(ids)]) if not m])
    assert "Be brief." in untrained and "2 + 2?" in untrained and "And 3 + 3?" in untrained
    assert "6" not in untrained and "</think>" not in untrained
    with pytest.raises(ValueError, match=r"chat\.jsonl:2: a multi-turn conversation \(1 in the set\) needs the model's "
                                         r"chat template \(template 'model'\), not 'r1-zero'"):
        encode_sft(path, tok, 256, "SFTConfig.seq_len", "r1-zero")
