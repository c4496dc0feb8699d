"""Math answer checking: equivalence rules, extraction from free text, MATH-500, hostile input."""

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

from r1jax.rewards import math as M
from r1jax.rewards.math_extract import MAX_ANSWER_PARTS, MAX_BOX_CHARS, MAX_COMPLETION_CHARS, MAX_READING_CHARS
from r1jax.rewards.workers import WorkerPool, default_pool

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

MATCH = [  # (gold, predicted answer, equivalent?)
    ("12", "12.0", True), ("0.5", r"\frac{1}{2}", True), (r"\frac12", "1/2", True), (r"\dfrac{3}{4}", "0.75", True),
    (r"\tfrac{3}{4}", r"\frac34", True), ("50\\%", "50", True), ("50%", "0.5", True), ("7,425,000", "7425000", True),
    ("7,425,000", "7425", False), ("1.2e5", "120000", True), (r"1.2 \times 10^{5}", "120000", True),
    (r"2\sqrt{3}", r"\sqrt{12}", True), (r"\sqrt{2}/2", r"\frac{1}{\sqrt{2}}", True),
    (r"\pi/2", r"\frac{\pi}{2}", True),
    (r"90^\circ", "90", True), (r"5\text{ cm}^2", "5", True), (r"\text{(C)}", "C", True), ("C", "B", False),
    (r"(1,2)", r"(1, 2)", True), (r"(1,2)", r"[1,2]", False), (r"(1,2)", r"(2,1)", False),
    (r"[2, \infty)", r"[2,\infty)", True), (r"(-\infty, 3) \cup (4, 5]", r"(4,5] \cup (-\infty,3)", True),
    (r"(-\infty, 3) \cup (4, 5]", r"(-\infty, 3) \cup (4, 5)", False), (r"\{1, 2, 3\}", r"\{3,1,2\}", True),
    ("1, -2", "-2, 1", True), ("1, -2", "1", False), ("x=3", "3", True), ("3", "x = 3", True),
    ("y = 2x+3", "y=3+2x", True), (r"x^2+2x+1", r"(x+1)^2", True), (r"x^2+2x+1", r"(x+1)^3", False),
    (r"\frac{x+1}{2}", r"0.5x + 0.5", True), (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", True),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix}1&2\\4&3\end{pmatrix}", False),
    ("12", "12 apples", True), (r"\$18", "18", True), ("18", r"\$18.00", True), (r"2^{10}", "1024", True),
    ("10!", "3628800", True), (r"\binom{5}{2}", "10", True), (r"\text{Evelyn}", "Evelyn", True),
    ("-1/3", r"-\frac{1}{3}", True), ("0.333", r"\frac13", True), ("0.33", r"\frac13", False),
    (r"x \ge 3", r"[3, \infty)", True),
    (r"\sin^2 x + \cos^2 x", "1", True), (r"e^{i\pi}", "-1", True), ("3", "4", False), ("", "4", False),
    (r"1\frac{4}{5}", "9/5", True), (r"137 \frac{1}{2}", "137.5", True), (r"-2\dfrac{1}{2}", "-2.5", True),
    (r"2\frac{1}{2}", "1", False), (r"x = 2\frac{1}{2}", "2.5", True),  # a mixed number, not a product
]

GRADE = [  # (gold, completion, correct?)
    ("12", "We add them. So the answer is 12 apples.", True),
    ("12", "<think>5+7</think> <answer>12</answer>", True),
    ("12", "<think>5+7=12</think> <answer>13</answer>", False),
    (r"\frac{1}{2}", r"Thus the probability is $\frac{1}{2}$.", True),
    (r"\frac{1}{2}", r"Therefore \(\frac12\).", True),
    ("5", r"so $$x = 5$$", True),
    ("3", r"First \boxed{2}, no wait, \boxed{3}", True),
    ("2", r"First \boxed{2}, no wait, \boxed{3}", False),
    ("2, 3", r"The roots are \boxed{2} and \boxed{3}", True),
    ("18", "Janet makes 9 * 2 = $18 every day.", True),
    ("The answer is 12 apples.", "12", True),
    ("$12$", "The final answer is 12", True),
    ("42", "Final Answer: The final answer is $42$. I hope it is correct.", True),
    ("72", "Natalia sold 48/2 = 24 clips in May. Altogether she sold 48+24 = 72 clips.", True),
    ("1000", "The total is 1,000 dollars.", True),
    ("3.5", "The answer is 3.5.", True),
    ("-4", "Hence x = -4.", True),
    ("10", r"The sum is \boxed{\dfrac{20}{2}}", True),
    ("7", "I think it's 6 or 7. The answer is 6.", False),
    ("1, 2, 3", "The solutions are 1, 2, and 3.", True), ("2, 3", "So x = 2 or x = 3.", True),
    ("2", "The answer is two.", True), ("7", "**Answer:** 7", True), ("42", "#### 42", True),
    ("1234.5", "She pays $1,234.50 in total.", True), (r"\{1,2\}", "The set is {1, 2}", True),
    ("[2,5]", r"$x \in [2, 5]$", True), ("5", "The answer is not 5, it's 6", False), ("3", "So x equals 3", True),
    ("10", "Each box holds 5, so 2 boxes hold 10 items.", True), ("90", r"The angle is $90^\circ$.", True),
    # one final answer, chosen without the gold: two answers are a list, not a choice for the grader
    ("5", "The answer is 3 or 5.", False), ("3", "The answer is 3 or 5.", False),
    ("3, 5", "The answer is 3 or 5.", True), ("5", r"It is \boxed{3} or \boxed{5}.", False),
    ("2, 3", r"So $x = \boxed{2}$ or $x = \boxed{3}$.", True),
    ("3", r"\boxed{2}. Wait, that is wrong: \boxed{3}", True),
    ("7", "**Answer: 7**", True), ("5", "<answer>3 or 5</answer>", False),
    # one answer written twice is that answer (MATH-500's solution to test/number_theory/459)
    (r"\frac{639}{40}", r"$d = \boxed{15\frac{39}{40}},$ or $\boxed{\frac{639}{40}}$ inches.", True),
    # where a reading of the answer is words around it, the answer is its last number
    ("12", "So the answer is 12 because 5 + 7 = 12.", True), ("10", "Then 50-25-15=$10 are left.", True),
    ("11", "It is about 11.  11", True), ("Evelyn", "The answer is Evelyn.", True),
    ("6", "We carry the answer from the last step: 4 + 2 = 6", True),  # "answer" without "is" or ":"
    ("-13", "<think> 3 - 16 = -13. </think> <answer> -13 </ans", True),  # an answer tag cut off
    ("6", "<think>2 + 4 = 6</think> <answer>", False),  # cut off before its answer
    ("460", "Thus, Eliza will receive a total of $400 + $60 = $460 for this week's work.", True),  # money
    ("145", "Each cup costs $34800/240=$<<34800/240=145>>145", True),  # GSM8K's calculator notes
    ("8000", "Dividing both sides by 11, we get h = 8,000", True), ("20", "The percentage is 4/20 x 100% = 20%.", True),
    ("34", "Therefore the height of the tallest tree is 2 x 17 = 34 feet.", True),
]


@pytest.mark.parametrize("gold,pred,want", MATCH)
def test_answers_match_cases(gold, pred, want):
    assert M._answers_match_local(gold, pred) is want


@pytest.mark.parametrize("gold,completion,want", GRADE)
def test_grade_free_text(gold, completion, want):
    assert M._grade_local(completion, gold) is want


def test_the_graded_answer_is_the_one_final_answer_whatever_the_gold():
    for gold, completion, want in GRADE:
        answer = M.final_answer(completion)
        assert (answer is not None and M._answers_match_local(gold, answer)) is want, (completion, answer)
    # the answer does not depend on the gold, so only one of these golds can be right
    assert M.final_answer("The answer is 3 or 5.") == "3 or 5"
    assert [M._grade_local("The answer is 3 or 5.", g) for g in ("3", "5", "3, 5")] == [False, False, True]


def test_public_api_runs_in_workers_and_keeps_order():
    golds = [g for g, _, _ in MATCH]
    preds = [p for _, p, _ in MATCH]
    assert M.match_batch(golds, preds) == [w for _, _, w in MATCH]
    assert M.grade_batch([c for _, c, _ in GRADE], [g for g, _, _ in GRADE]) == [w for _, _, w in GRADE]
    assert M.grade("<answer>4</answer>", "4") and not M.answers_match("4", "5")


def test_extraction_modes():
    text = r"<think>maybe \boxed{3}</think> <answer>4</answer> and finally 5"
    assert M.final_answer(text, "answer_tag") == "4"
    assert M.final_answer(text, "boxed") == "3"
    assert M.final_answer(text, "last_number") == "5"
    assert M.final_answer(r"\boxed{\frac{1}{\sqrt{2}}}", "boxed") == r"\frac{1}{\sqrt{2}}"
    assert M.final_answer("no answer here", "answer_tag") is None
    # answers stated together are one list; a correction is not
    assert M.final_answer(r"$x = \boxed{2}$ or $x = \boxed{-1}$") == "2, -1"
    assert M.final_answer(r"\boxed{2}, no wait, \boxed{3}", "boxed") == "3"
    assert M.final_answer("The roots are $2$ and $3$.") == "2, 3"
    with pytest.raises(ValueError, match="unknown extraction mode"):
        M.final_answer("x", "tags")


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not present")
def test_math500_answers_match_their_boxed_solutions():
    recs = [json.loads(line) for line in open(DATA / "math500_test.jsonl")]
    boxed = [M.last_boxed(r["solution"]) or "" for r in recs]
    ok = M.match_batch([r["answer"] for r in recs], boxed)
    assert all(ok), [(r["answer"], b) for r, b, k in zip(recs, boxed, ok) if not k]
    # and shuffled across problems they (almost) never agree
    shuffled = M.match_batch([r["answer"] for r in recs], boxed[7:] + boxed[:7])
    assert sum(shuffled) / len(recs) < 0.05


ADVERSARIAL = ["__import__('os').system('touch {marker}')", "9**9**9**9", r"10^{10^{10^{10}}}",
               "(" * 500_000 + "1" + ")" * 500_000, "1000000!", r"(10^{100})!", "３", "٣", "𝟑",
               r"\frac{1}{0}", "2^{2^{2^{2^{2^{2^{2}}}}}}", "9" * 1_000_000, "x" * 300 + "^99999",
               "{" * 10_000 + "}" * 10_000, r"\sqrt{\sqrt{\sqrt{" * 200 + "3" + "}" * 600]


@pytest.mark.parametrize("attack", ADVERSARIAL, ids=lambda a: a[:25])
def test_hostile_answers_are_false_fast_and_run_nothing(tmp_path, attack):
    marker = tmp_path / "pwned"
    attack = attack.replace("{marker}", str(marker))
    t0 = time.monotonic()
    results = [M.grade(f"<answer>{attack}</answer>", "3"), M.answers_match("3", attack),
               M.grade(r"\boxed{" + attack + "}", "1")]
    assert time.monotonic() - t0 < 3.0  # three checks, each bounded by 1 s
    assert results == [False, False, False]
    assert not marker.exists()
    assert M.grade("<answer>3</answer>", "3")  # the scorer survived


def test_timeouts_kill_the_worker_and_keep_order():
    pool = WorkerPool(n_workers=2, tasks={"sleep": ("time", "sleep")})
    try:
        t0 = time.monotonic()
        out = pool.map("sleep", [[0.01], [30], [0.01], [30], [0.01]], timeout=0.3)
        assert time.monotonic() - t0 < 3.0
        assert out == [None, False, None, False, None]  # time.sleep returns None; killed items are False
        assert pool.restarts == 2
        assert pool.map("sleep", [[0]], timeout=1.0) == [None]  # replacements work
        pids = [w.proc.pid for w in pool._workers]
    finally:
        pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(KeyError, match="unknown task"):
        WorkerPool(tasks={}).map("math.grade", [], 1.0)


# ----------------------------------------------------------------------------- bounds, not kills

def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_math_reward.py"
    spec = importlib.util.spec_from_file_location("bench_math_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hostile_completions_are_decided_by_bounds_without_a_kill():
    # The families of benchmarks/bench_math_reward.py (huge binomials, boxes nested 10,000 deep,
    # 1 MB strings, 190,000 spaces after '####', ...), two sizes each, at the production limit:
    # every check ends by itself well inside 0.5 s, so no worker is killed.
    items = _bench().adversarial(2 * len(_bench().FAMILIES))
    pool = WorkerPool(n_workers=2)
    try:
        pool.map("math.grade", [["\\boxed{3}", "3", "auto"]] * 2, timeout=5.0)  # start the workers
        t0 = time.monotonic()
        out = pool.map("math.grade", [[c[-MAX_COMPLETION_CHARS:], g, "auto"] for c, g in items], timeout=0.5)
        elapsed = time.monotonic() - t0
        assert pool.restarts == 0
    finally:
        pool.close()
    assert elapsed < 10.0, elapsed
    assert all(isinstance(x, bool) for x in out)


@pytest.mark.parametrize("text,want", [
    (r"\boxed{" * 5000 + "3" + "}" * 5000, "3"),  # a box that holds one box holds its answer
    (r"\boxed{\boxed{3}}", "3"), (r"\boxed{ \fbox{x + 1} }", "x + 1"),
    (r"\boxed{" * 5000 + "}" * 5000 + r" so \boxed{3}", "3"),
    (r"\boxed{" + "{" * 20 + "1" + "}" * 20 + r"} or \boxed{2}", "2"),  # too deep to be an answer
    (r"\boxed{" + "9" * (MAX_BOX_CHARS + 1) + r"} \boxed{2}", "2"),  # too long to be an answer
    (r"\boxed{1} " * 1000 + r"then \boxed{2}", "2"), ("#### 1" + " " * 150_000 + "\n", "1"),
    (r"The answer is \( a \( 7 \)", " 7 "),  # an opening never closed reads up to the next one
    ("$1$ and " * 100 + "$2$", ", ".join(["1"] * (MAX_ANSWER_PARTS - 1) + ["2"])),  # parts stated together
    ("7 " + "x" * (2 * MAX_READING_CHARS), None),  # the last number is looked for near the end
])
def test_extraction_bounds(text, want):
    t0 = time.monotonic()
    assert M.final_answer(text) == want
    assert time.monotonic() - t0 < 0.5


def test_huge_binomials_are_decided_from_their_size():
    t0 = time.monotonic()
    for a in (r"\binom{1000000}{500000}", r"\binom{10^{71}}{9326}", r"\binom{100000.5}{50000}"):
        assert not M._answers_match_local("3", a)
    assert time.monotonic() - t0 < 0.5
    assert M._answers_match_local("120", r"\binom{10}{3}") and M._answers_match_local(r"\binom{10^{5}}{1}", "100000")
    assert M._answers_match_local("0", r"\binom{3}{5}")


def test_comparing_long_lists_is_bounded_work():
    def halves(n, reverse=False):  # n values x.5, as decimals or, in reverse order, as fractions
        return ", ".join(rf"\frac{{{2 * i + 1}}}{{2}}" for i in reversed(range(n))) if reverse else \
            ", ".join(f"{i}.5" for i in range(n))
    t0 = time.monotonic()
    # one check's comparisons stop at MAX_MATCH_WORK: 100 values against the same 100 written
    # otherwise in reverse order (~5,000 expression pairs, 1.7 s) are not worth comparing
    assert not M._answers_match_local(halves(100), halves(100, reverse=True))
    # two answers stated together are compared to drop a repeat: 300 items each took 17 s
    assert M.final_answer(rf"\boxed{{{halves(300)}}} and \boxed{{{halves(300, True)}}}") == \
        f"{halves(300)}, {halves(300, True)}"
    assert time.monotonic() - t0 < 0.5
    # what a real answer needs stays within it; the same items in another order cost no comparisons
    assert M._answers_match_local(halves(20), halves(20, reverse=True))
    assert M._answers_match_local(", ".join(map(str, range(300))), ", ".join(map(str, reversed(range(300)))))


@pytest.mark.parametrize("call,error,words", [
    (lambda: M.grade(b"12", "12"), TypeError, "completion is bytes"),
    (lambda: M.grade("12", 12), TypeError, "gold is int"),
    (lambda: M.grade("12", "12", mode="boxd"), ValueError, "mode 'boxd'"),
    (lambda: M.grade_batch(["1", None], ["1", "2"]), TypeError, r"completions\[1\] is NoneType"),
    (lambda: M.grade_batch("12", "12"), TypeError, "completions must be a sequence"),
    (lambda: M.grade_batch(["1"], ["1"], mode="boxd"), ValueError, "'auto', 'answer_tag', 'boxed', 'last_number'"),
    (lambda: M.grade_batch(["1"], ["1", "2"]), ValueError, "1 completions but 2 gold"),
    (lambda: M.grade_batch(["1"], ["1"], timeout=0), ValueError, "timeout"),
    (lambda: M.answers_match("1", b"1"), TypeError, "pred is bytes"),
    (lambda: M.match_batch(["1"], [1.0]), TypeError, r"preds\[0\] is float"),
    (lambda: M.final_answer("12", "boxd"), ValueError, "unknown extraction mode 'boxd'"),
])
def test_bad_arguments_are_errors_before_any_worker_work(call, error, words):
    pool = default_pool()
    M.grade("\\boxed{1}", "1")
    restarts = pool.restarts
    with pytest.raises(error, match=words):
        call()
    assert all(w.item is None for w in pool._workers)  # nothing left in flight
    t0 = time.monotonic()
    assert M.grade("\\boxed{12}", "12")
    assert time.monotonic() - t0 < 0.3 and pool.restarts == restarts


def test_an_item_that_is_not_json_leaves_no_stale_worker():
    pool = WorkerPool(n_workers=1, tasks={"sleep": ("time", "sleep")})
    try:
        pool.map("sleep", [[0]], timeout=5.0)
        with pytest.raises(TypeError):
            pool.map("sleep", [[0.01], [b"x"]], timeout=5.0)
        t0 = time.monotonic()
        assert pool.map("sleep", [[0]], timeout=5.0) == [None]
        assert time.monotonic() - t0 < 2.0  # not the 5 s wait on an item that was never sent
    finally:
        pool.close()
