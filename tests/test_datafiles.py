"""Training sets from files (r1jax.tasks.datafiles): every layout and file type, unusable records
reported by file, row and field and never dropped silently, and an RL run from a GSM8K-format
export of the world's problems equal, to the last digit, to the same run from the generator."""

import json

import jax
import numpy as np
import pytest

from r1jax import checkpoint, runtime
from r1jax.config import DataConfig, override_paths
from r1jax.stages import grpo as grpo_stage
from r1jax.tasks import default_data_dir, task_pool
from r1jax.tasks.datafiles import data_files, load_examples

pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the 'data' extra)")
pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow (the 'data' extra)")

LAYOUTS = {
    "gsm8k": {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
    "math": {"problem": "Compute $\\frac{1}{2} + \\frac{1}{4}$.", "solution": "We add: $\\boxed{\\frac{3}{4}}$."},
    "numina": {"problem": "Find x if 2x = 10.", "solution": "x = 5", "answer": "5"},
    "verl": {"prompt": [{"role": "system", "content": "Think."}, {"role": "user", "content": "What is 6 * 7?"}],
             "reward_model": {"ground_truth": "42", "style": "rule"}, "data_source": "openai/gsm8k"},
}
WANT = {"gsm8k": ("Tom has 3 apples and buys 4. How many?", "7"), "math": ("Compute $\\frac{1}{2} + \\frac{1}{4}$.",
        "\\frac{3}{4}"), "numina": ("Find x if 2x = 10.", "5"), "verl": ("What is 6 * 7?", "42")}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_every_layout_in_every_file_type(tmp_path, layout, suffix):
    rows = [LAYOUTS[layout]] * 3
    path = tmp_path / f"train{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    examples, bad = load_examples(DataConfig(path=str(path)))  # the layout detected from the fields
    assert bad == [] and len(examples) == 3
    assert (examples[0].prompt, examples[0].answer) == WANT[layout]
    assert [e.id for e in examples] == ["train-1", "train-2", "train-3"]
    named, _ = load_examples(DataConfig(path=str(path), format=layout))
    assert named == examples


def test_a_folder_of_parquet_shards_as_hub_repositories_lay_them_out(tmp_path):
    (tmp_path / "data").mkdir()
    for i in range(3):
        rows = [{"problem": f"p{i}-{j}", "solution": "s", "answer": f"{i}{j}"} for j in range(2)]
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / f"train-0000{i}-of-00003.parquet")
    (tmp_path / "README.md").write_text("not data")
    assert [f.name for f in data_files(str(tmp_path))] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    examples, _ = load_examples(DataConfig(path=str(tmp_path)))
    assert [e.answer for e in examples] == ["00", "01", "10", "11", "20", "21"]
    glob, _ = load_examples(DataConfig(path=str(tmp_path / "data" / "train-*.parquet")))
    assert glob == examples


def test_a_folder_of_several_splits_is_refused_and_a_glob_picks_one(tmp_path):
    """Reading a hub dataset's folder took its test shards into the training set, silently."""
    (tmp_path / "data").mkdir()
    for split in ("train", "test"):
        (tmp_path / "data" / f"{split}-00000-of-00001.jsonl").write_text(json.dumps(LAYOUTS["numina"]) + "\n")
    with pytest.raises(ValueError, match=r"holds several splits \((test: 1 file\(s\), train|train: 1 file\(s\), "
                                         r"test): 1 file\(s\)\); point data.path at one, e\.g\. '.*train\*'"):
        data_files(str(tmp_path))
    assert [f.name for f in data_files(str(tmp_path / "**" / "train*"))] == ["train-00000-of-00001.jsonl"]
    (tmp_path / "data" / "test-00000-of-00001.jsonl").unlink()  # one split, in shards or not: read whole
    (tmp_path / "data" / "train-extra.jsonl").write_text(json.dumps(LAYOUTS["numina"]) + "\n")
    assert len(data_files(str(tmp_path))) == 2


def test_text_that_is_not_utf8_or_not_json_names_its_file_and_line_and_a_bom_is_read(tmp_path):
    good = json.dumps(LAYOUTS["numina"]) + "\n"
    (tmp_path / "latin1.jsonl").write_bytes((good + '{"problem": "caf\u00e9", "answer": "1"}\n').encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 17\)"):
        load_examples(DataConfig(path=str(tmp_path / "latin1.jsonl")))
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (good * 2).encode())
    assert len(load_examples(DataConfig(path=str(tmp_path / "bom.jsonl")))[0]) == 2
    (tmp_path / "comma.json").write_text("[\n" + good.strip() + ",\n]\n")
    with pytest.raises(ValueError, match=r"comma\.json:3: invalid JSON \(Expecting value at column 1\)"):
        load_examples(DataConfig(path=str(tmp_path / "comma.json")))
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf[" + good.strip().encode() + b"]")
    assert len(load_examples(DataConfig(path=str(tmp_path / "bom.json")))[0]) == 1


def test_an_empty_verl_ground_truth_is_a_bad_record(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps(LAYOUTS["verl"]) + "\n" + json.dumps({**LAYOUTS["verl"], "reward_model": {
        "ground_truth": " "}}) + "\n")
    with pytest.raises(ValueError, match=r"v\.jsonl:2: field 'reward_model\.ground_truth' is empty"):
        load_examples(DataConfig(path=str(path)))


def test_field_overrides(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"q": "What is 2 + 2?", "final": 4, "answer": "ignored"}) + "\n")
    examples, _ = load_examples(DataConfig(path=str(path), format="numina", prompt_field="q", answer_field="final"))
    assert (examples[0].prompt, examples[0].answer) == ("What is 2 + 2?", "4")
    # docs/data.md's example names both fields and no format: no known layout, so they are read as text
    assert load_examples(DataConfig(path=str(path), prompt_field="q", answer_field="final"))[0] == examples
    with pytest.raises(ValueError, match=r"qa\.jsonl:1: no known layout has the fields"):  # one named: no guess
        load_examples(DataConfig(path=str(path), prompt_field="q"))


def test_unusable_records_are_reported_and_counted_never_dropped_silently(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [LAYOUTS["gsm8k"], {"question": "No final line", "answer": "it is 7"}, LAYOUTS["gsm8k"],
            {"question": "", "answer": "#### 1"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"2 unusable record\(s\) in .*more than data.max_bad_records=1:\n  "
                                         r".*train\.jsonl:2: field 'answer' has no '#### <number>' final line\n  "
                                         r".*train\.jsonl:4: field 'question' must be a non-empty string"):
        load_examples(DataConfig(path=str(path), max_bad_records=1))
    examples, bad = load_examples(DataConfig(path=str(path), max_bad_records=2))
    assert [e.id for e in examples] == ["train-1", "train-3"] and len(bad) == 2
    with pytest.raises(ValueError, match="no known layout has the fields \\['input', 'output'\\]"):
        path.write_text(json.dumps({"input": "a", "output": "b"}) + "\n")
        load_examples(DataConfig(path=str(path)))
    with pytest.raises(ValueError, match="data.format must be one of auto, gsm8k, math, numina, verl"):
        DataConfig(format="alpaca")


def test_the_real_gsm8k_training_set_loads_whole():
    path = default_data_dir() / "gsm8k_train.jsonl"
    if not path.is_file():
        pytest.skip(f"shared data absent: {path}")
    examples, bad = load_examples(DataConfig(path=str(path)))
    assert len(examples) == 7473 and bad == []
    assert all(e.answer.lstrip("-").replace(".", "", 1).isdigit() for e in examples)


@pytest.fixture
def base(tiny_world_base):
    return tiny_world_base


def test_rl_from_a_gsm8k_file_equals_rl_from_the_generator(base, tmp_path):
    rl = {"trainer.steps": 2, "prompts_per_step": 4, "grpo.group_size": 4, "grpo.minibatches": 2, "n_train": 12,
          "rollout.max_new_tokens": 16, "rollout.max_prompt_tokens": 64, "grpo.beta": 0.01}
    pool = task_pool("world", 12, 0)
    path = tmp_path / "world_gsm8k.jsonl"
    path.write_text("".join(json.dumps({"question": ex.prompt, "answer": f"worked out\n#### {ex.answer}"}) + "\n"
                            for ex in pool))
    generated = grpo_stage.RLConfig(out_dir=str(tmp_path / "gen"), base_dir=str(base))
    grpo_stage.grpo(override_paths(generated, rl))
    from_file = override_paths(grpo_stage.RLConfig(out_dir=str(tmp_path / "file"), base_dir=str(base)),
                               {**rl, "data.path": str(path)})
    summary = grpo_stage.grpo(from_file)
    assert summary["records"] == 12 and summary["bad_records"] == 0
    gen = [json.loads(line) for line in open(tmp_path / "gen" / "metrics.jsonl")]
    got = [json.loads(line) for line in open(tmp_path / "file" / "metrics.jsonl")]
    timing = ("tokens_per_s", "time_sample", "time_reward", "time_update")
    for a, b in zip(gen, got):  # the world's per-difficulty lengths need its metadata; the rest is equal
        assert {k: v for k, v in b.items() if k not in timing} == \
            {k: v for k, v in a.items() if k not in timing and not k.startswith("response_length_ops")}
    for a, b in zip(*(jax.tree.leaves(checkpoint.restore_params(tmp_path / d / "ckpt", runtime.stage_model_config(
            tmp_path / d))) for d in ("gen", "file"))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_chat_message_sft_records(tmp_path):
    """open-r1's / OpenThoughts' layout: {"messages": [...]} of one exchange becomes a prompt and
    a response, a longer conversation stays a conversation (for the chat template's multi-turn
    loss mask), and one that does not end with an answer is an error naming its line."""
    from r1jax.tasks.sft import read_sft_jsonl
    good = {"messages": [{"role": "system", "content": "Think first."}, {"role": "user", "content": "2 + 2?"},
                         {"role": "assistant", "content": "<think> 2 + 2 = 4 </think> 4"}], "source": "open-r1"}
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(good) + "\n")
    want = {"source": "open-r1", "prompt": "2 + 2?", "response": "<think> 2 + 2 = 4 </think> 4"}
    assert read_sft_jsonl(path) == [want]
    talk = good["messages"] + [{"role": "user", "content": "3 + 3?"}, {"role": "assistant", "content": "6"}]
    path.write_text(json.dumps({"messages": talk, "source": "x"}) + "\n")
    assert read_sft_jsonl(path) == [{"messages": talk, "source": "x"}]
    bad = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"chat\.jsonl:2: field 'messages': expected user and assistant turns "
                                         r"alternating, ending with an assistant turn .* "
                                         r"got roles \['user', 'assistant', 'user'\]"):
        read_sft_jsonl(path)


def test_prompts_walk_a_new_shuffle_each_epoch():
    """Step s of a run draws positions [s*Q, (s+1)*Q) of the stream: epoch 0 is the seeded
    permutation the stages always used, each later epoch another permutation of the whole pool."""
    from r1jax.tasks.datafiles import draw
    pool = list(range(10))
    first = np.random.default_rng(3).permutation(10)
    assert draw(pool, 3, 0, 10) == [pool[i] for i in first]
    second = draw(pool, 3, 10, 10)
    assert sorted(second) == pool and second != draw(pool, 3, 0, 10)
    assert draw(pool, 3, 8, 4) == draw(pool, 3, 0, 20)[8:12]  # across the epoch boundary, by position alone


def test_sft_sets_in_parquet_shards(tmp_path):
    from r1jax.tasks.sft import read_sft_jsonl
    (tmp_path / "data").mkdir()
    for i in range(2):
        pq.write_table(pa.Table.from_pylist([{"prompt": f"q{i}", "response": f"a{i}"}]),
                       tmp_path / "data" / f"train-0000{i}-of-00002.parquet")
    assert read_sft_jsonl(tmp_path) == [{"prompt": "q0", "response": "a0"}, {"prompt": "q1", "response": "a1"}]
