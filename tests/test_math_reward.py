"""Math answer checking: equivalence rules, extraction from free text, MATH-500, hostile input."""

import json
import os
import time
from pathlib import Path

import pytest

from r1jax.rewards import math as M
from r1jax.rewards.workers import WorkerPool

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
    ("-1/3", r"-\frac{1}{3}", True), ("0.333", r"\frac13", False), (r"x \ge 3", r"[3, \infty)", True),
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
    assert sum(ok) / len(recs) >= 0.99, [(r["answer"], b) for r, b, k in zip(recs, boxed, ok) if not k]
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
