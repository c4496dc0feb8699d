"""The kinds of answers olympiad-style training sets are full of (issue 21): each kind matches
where it should and not where it should not, through `answers_match` and `grade`."""

import pytest

from r1jax.rewards import math as M

KINDS = {  # kind: [(gold, predicted answer, equivalent?)]
    "inequalities against intervals": [
        (r"[5, \infty)", "x >= 5", True), (r"[5, \infty)", r"x \ge 5", True), (r"[5, \infty)", r"5 \leq x", True),
        (r"[5, \infty)", r"x \in [5, \infty)", True), (r"x \geq 5", "x >= 5", True), (r"x \le 5", r"5 \geq x", True),
        ("x < 1", "-x > -1", True), ("(-1, 3]", r"-1 < x \le 3", True), (r"-793 < a < 10", "(-793, 10)", True),
        (r"(5, \infty)", "x >= 5", False), (r"[-1, 3]", r"-1 < x \le 3", False), ("x > 5", "x < 5", False),
        (r"x \geq 5", r"y \geq 5", False), (r"x \geq 5", r"x \leq 5", False),
    ],
    "unordered sets and lists of tuples": [
        (r"\{1, 2\}", r"\{2, 1\}", True), ("(1,2),(3,4)", "(3,4),(1,2)", True),
        (r"\{(1,2),(3,4)\}", "(3,4), (1,2)", True),
        ("(11,7)or(7,11)", r"(7,11),\ (11,7)", True), ("-12;-11;-10", r"\{-10, -11, -12\}", True),
        ("(0;0;1),(0;-2;1)", "(0, -2, 1), (0, 0, 1)", True), ("(1,2),(1,2),(3,4)", "(3,4),(1,2)", True),
        ("(1,2)", "(2,1)", False), ("(1,2),(3,4)", "(2,1),(3,4)", False), ("(1,2),(3,4)", "(1,2)", False),
        (r"\{1, 2\}", r"\{1, 3\}", False),
    ],
    "labelled answers": [
        ("(p, q) = (3, 2)", "(3, 2)", True), ("AB = 4, CD = 5", "4, 5", True), ("x = 3, y = 4", "3, 4", True),
        ("a_3 = 2, a_{37} = 19", r"a_{37} = 19, \quad a_3 = 2", True), ("|AB| = 1", "1", True),
        ("V_1 : V_2 = 11 : 21", "11 : 21", True), (r"\frac{NO}{BO} = \frac{1}{\sqrt{6}}", r"\frac{1}{\sqrt{6}}", True),
        ("(x, y) = (5, 8), (8, 5)", "(5, 8), (8, 5)", True), ("x = 5+5+1 = 11", "11", True),
        ("(p, q) = (3, 2)", "(2, 3)", False), ("x = 3, y = 4", "3, 5", False),
        ("a + 3z = 0", "0", False), ("7 = 11a + c", "11a + c", False), ("2x = 4", "4", False),
    ],
    "thousands separators": [
        ("1000000", "1 000 000", True), ("1000000", "1,000,000", True), ("1000", "1{,}000", True),
        ("1000", r"1\,000", True), ("11111111100", r"11,\! 111,\! 111,\! 100", True), ("14916", "14 {, }916", True),
        ("32349", "32, 349", False), ("1000000", "1 000 00", False), ("7425000", "7425", False),
    ],
    "decimal commas": [  # a comma no thousands separator could be, against one number that is not whole
        ("3.5", "3,5", True), ("1.22", "1,22", True), ("0.111", "0,111", True), ("1000.99", "1000,99", True),
        ("3, 5", "3,5", True),  # against a list it is a list
        ("5", "3,5", False), ("3", "3,5", False), ("1.234", "1,234", False),  # 1,234 is thousands
    ],
    "percents": [
        ("28", "28 pct", True), ("28", "28 percent", True), ("28", r"28\%", True), (r"28\%", "28 percentage", True),
        ("0.28", r"28\%", True), ("28", "29 percent", False), ("0.28", "28 pct", True), ("2.8", r"28\%", False),
    ],
    "equations up to a constant factor": [
        ("x + y - z = 2", "2x + 2y - 2z = 4", True), ("x + y - z = 2", "-x - y + z = -2", True),
        ("y = 2x + 1", "4x - 2y + 2 = 0", True), ("x^2/4 + y^2/9 = 1", "9x^2 + 4y^2 = 36", True),
        ("2x + 4y - 3 = 0", r"y = -\frac{1}{2}x + \frac{3}{4}", True),
        ("x + y - z = 2", "x + y - z = 4", False), ("x + y - z = 2", "x + y + z = 2", False),
        ("x^2 + y^2 = 1", "x^2 + y^2 = 2", False), ("x + y = 0", "0 = 0", False),
    ],
    "decimals against exact values": [  # the exact value rounded to the decimal's places, 3+ significant digits
        ("1/3", "0.333", True), ("1/3", "0.3333", True), ("2/3", "0.667", True), (r"\sqrt{2}", "1.414", True),
        (r"\frac{1}{12}", "0.0833333333333333", True), (r"(\frac{3}{5}, \frac{8}{3}]", "(0.6, 2.6667]", True),
        ("1/3", "0.334", False), ("2/3", "0.666", False), ("1/3", "0.33", False), ("1/3", "0.3", False),
        (r"\sqrt{2}", "1.415", False), ("3", "3.0001", False), ("2.5", "2.51", False), ("0.333", "0.3333", False),
    ],
    "matrices and vectors with decimal entries": [
        (r"\begin{pmatrix} 1/2 \\ 1 \end{pmatrix}", r"\begin{pmatrix} 0.5 \\ 1 \end{pmatrix}", True),
        (r"\begin{pmatrix} \frac{1}{3} & 1 \end{pmatrix}", r"\begin{bmatrix} 0.333 & 1 \end{bmatrix}", True),
        (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\left[\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right]",
         True),
        (r"\begin{pmatrix} 1/2 \\ 1 \end{pmatrix}", r"\begin{pmatrix} 0.6 \\ 1 \end{pmatrix}", False),
        (r"\begin{pmatrix} \frac{1}{3} & 1 \end{pmatrix}", r"\begin{pmatrix} 0.3 & 1 \end{pmatrix}", False),
    ],
    "plus or minus": [
        (r"1 \pm \sqrt{19}", r"1 + \sqrt{19}, 1 - \sqrt{19}", True), (r"\pm 2021", r"\{-2021, 2021\}", True),
        (r"\pm 2021", "2021", False), (r"1 \pm \sqrt{19}", r"1 + \sqrt{19}", False),
    ],
}

CASES = [(kind, g, p, w) for kind, cases in KINDS.items() for g, p, w in cases]

GRADE = [  # (gold, completion, correct?): how the one final answer is found
    # several boxed answers stated together are one list answer
    ("2, 3", r"So \boxed{2} and \boxed{3}.", True), ("2, 3", r"\boxed{2}, \boxed{3}", True),
    ("(2, 2), (6, 2)", r"$\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}$", True),
    ("(3, 3), (1, 1)", r"$\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}$", True),
    ("1, 2", r"\boxed{1} papers and \boxed{2} bins", True), ("1, 2", r"\boxed{1} no no no no \boxed{2}", False),
    ("3", r"\boxed{2} or \boxed{3}", False), ("2", r"\boxed{2} or \boxed{3}", False),
    (r"-2(x-1)^2+5, 3(x+2)^2-2", r"\( y_1 = \boxed{-2(x - 1)^2 + 5} \) and \( y_2 = \boxed{3(x + 2)^2 - 2} \)", True),
    # a gold given as boxes is what they say together
    (r"\(\boxed{1}\) and \(\boxed{-2}\).", r"$\boxed{-2,1}$.", True), (r"\boxed{1}\boxed{2}", r"\boxed{1,2}", True),
    # answers written bare are the answer, not their last number
    ("(1,2)", "(1,2)", True), ("(1,2)", "(2,1)", False), (r"\frac{10}{9}", r"\frac{10}{9}", True),
    ("-10/9", r"-\frac{10}{9}", True), ("1000", "1 000", True), (r"\frac13", r"$\frac13 $", True),
    (r"[2, \infty)", r"[2, \infty).", True), ("Evelyn", r"\text{Evelyn}", True), ("2", "AZYUK2A", False),
    ("5", "3 or 5", False), ("3, 5", "3 or 5", True), ("9", "10 20 9", True),
    # the number a sentence states after its math, and an answer restated after the last box
    ("34", "Final Answer: The largest $n$ is 34.", True),
    ("10455", r"so \boxed{255}. Final Answer: The final answer is $10,455$. I hope it is correct.", True),
    ("255", r"so \boxed{255}. The answer is correct.", True),
    ("12", "The divisors are $d = 90/n$. Therefore, there are 12 sequences. I hope it is correct.", True),
    ("9", "Answer \\[ \n 9 \n \\]", True), ("2.74", "Soucis : 2,74 $ a..", True),
]


@pytest.mark.parametrize("kind,gold,pred,want", CASES, ids=[f"{k}:{g}|{p}" for k, g, p, _ in CASES])
def test_each_kind_matches_where_it_should(kind, gold, pred, want):
    assert M._answers_match_local(gold, pred) is want
    # a completion that boxes the answer is graded the same
    assert M._grade_local(rf"So the answer is $\boxed{{{pred}}}$.", gold) is want


@pytest.mark.parametrize("gold,completion,want", GRADE)
def test_the_one_final_answer_of_a_completion(gold, completion, want):
    assert M._grade_local(completion, gold) is want


def test_through_the_workers():
    golds, preds, wants = zip(*[(g, p, w) for _, g, p, w in CASES])
    assert M.match_batch(list(golds), list(preds)) == list(wants)
    assert M.grade_batch([c for _, c, _ in GRADE], [g for g, _, _ in GRADE]) == [w for _, _, w in GRADE]
