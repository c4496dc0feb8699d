"""Tests for r1jax.tasks: generated families (answers re-derived independently) and benchmark loaders.

The reference answers are checked with computations that share no code with the generators:
expressions are evaluated by walking Python's `ast` with Fractions, equations by substituting
the answer, bilingual pairs by comparing the numbers in both prompts.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import operator
import re
import subprocess
import sys
import time
from fractions import Fraction

import pytest

from r1jax.tasks import (
    BENCHMARKS,
    FAMILIES,
    Example,
    arithmetic,
    bilingual,
    countdown,
    countdown_check,
    default_data_dir,
    extract_countdown_expression,
    generate,
    linear_equations,
    load_benchmark,
    word_problems,
)
from r1jax.tasks import benchmarks as benchmarks_module

# ------------------------------------------------------------------------------------------------
# Independent helpers
# ------------------------------------------------------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def ast_eval(text: str) -> Fraction:
    """Exact value of + - * / integer arithmetic, by walking Python's AST (never eval)."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise AssertionError(f"unexpected syntax {ast.dump(node)} in {text!r}")
    return walk(ast.parse(text, mode="eval"))


def ast_literals(text: str) -> list[int]:
    return sorted(n.value for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Constant))


def ints_in(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"\d+", text)]


def parse_linear_side(side: str, variables: list[str]) -> tuple[list[int], int]:
    """'3x - y + 5' -> ([3, -1], 5): an independent reading of the prompt's equation text."""
    coefs, const = [0] * len(variables), 0
    for sign, digits, var in re.findall(r"([+-]?)\s*(\d*)\s*([a-z]?)", side.replace(" ", "")):
        if not digits and not var:
            continue
        value = (int(digits) if digits else 1) * (-1 if sign == "-" else 1)
        if var:
            coefs[variables.index(var)] += value
        else:
            const += value
    return coefs, const


def det(m: list[list[Fraction]]) -> Fraction:
    """Determinant by cofactor expansion (fine for 1x1 to 3x3)."""
    if len(m) == 1:
        return Fraction(m[0][0])
    return sum((-1) ** j * m[0][j] * det([row[:j] + row[j + 1:] for row in m[1:]]) for j in range(len(m)))


def parse_answer_tuple(answer: str) -> list[Fraction]:
    assert answer.startswith("(") and answer.endswith(")"), answer
    return [Fraction(part.strip()) for part in answer[1:-1].split(",")]


CJK = re.compile(r"[\u4e00-\u9fff]")

# ------------------------------------------------------------------------------------------------
# Example / package hygiene
# ------------------------------------------------------------------------------------------------


def test_example_is_frozen_and_hashable():
    ex = Example(id="a", prompt="p", answer="1")
    assert ex.metadata == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.answer = "2"  # type: ignore[misc]
    assert len({ex, Example(id="a", prompt="p", answer="1")}) == 1  # hashable despite the dict field
    assert hash(ex) == hash(Example(id="a", prompt="p", answer="1", metadata={"k": 1}))


def test_tasks_package_does_not_import_jax():
    code = "import sys, r1jax.tasks; assert 'jax' not in sys.modules, 'r1jax.tasks imported jax'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# Determinism for every family
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_families_are_deterministic(family):
    a = generate(family, 12, seed=7)
    assert a == generate(family, 12, seed=7)
    assert a != generate(family, 12, seed=8)
    assert generate(family, 5, seed=7) == a[:len(generate(family, 5, seed=7))]  # prefix-stable
    assert len({e.id for e in a}) == len(a)
    for e in a:
        assert e.metadata["family"] == family and "difficulty" in e.metadata and "language" in e.metadata
        assert e.prompt and e.answer


def test_generate_rejects_typos_with_the_valid_options():
    with pytest.raises(ValueError, match="valid families: .*arithmetic.*countdown"):
        generate("arithmetc", 1, 0)
    with pytest.raises(ValueError, match="n_opps.*valid knobs: n_ops, max_value"):
        generate("arithmetic", 1, 0, n_opps=3)
    with pytest.raises(ValueError, match="language"):
        bilingual(1, 0, language="fr")
    with pytest.raises(ValueError, match="n_vars"):
        linear_equations(1, 0, n_vars=4)
    assert generate("arithmetic", 0, 0) == []


# ------------------------------------------------------------------------------------------------
# Arithmetic
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_ops,max_value", [(1, 10), (2, 100), (4, 50)])
def test_arithmetic_answers_match_ast_evaluation(n_ops, max_value):
    examples = arithmetic(60, seed=3, n_ops=n_ops, max_value=max_value)
    for e in examples:
        m = re.fullmatch(r"Compute (.+)\.", e.prompt)
        assert m, e.prompt
        expression = m.group(1)
        assert ast_eval(expression) == Fraction(int(e.answer)), e
        tree = ast.parse(expression, mode="eval")
        assert sum(isinstance(n, ast.BinOp) for n in ast.walk(tree)) == n_ops
        assert all(1 <= v <= max_value for v in ast_literals(expression))
        # Division only when exact: every "/" node divides integers with no remainder.
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                left = ast_eval(ast.unparse(node.left))
                right = ast_eval(ast.unparse(node.right))
                assert right != 0 and (left / right).denominator == 1
    assert any("/" in e.prompt for e in examples) or n_ops == 1


# ------------------------------------------------------------------------------------------------
# Countdown
# ------------------------------------------------------------------------------------------------


def test_countdown_reference_solutions_are_valid():
    for e in countdown(60, seed=11, n_numbers=4, max_number=25, max_target=100):
        numbers, target = e.metadata["numbers"], e.metadata["target"]
        assert len(numbers) == 4 and all(1 <= x <= 25 for x in numbers)
        assert 1 <= target <= 100 and isinstance(target, int)
        assert e.prompt == (f"Using the numbers {numbers}, each exactly once, with + - * / and "
                            f"parentheses, make {target}.")
        assert countdown_check(e.answer, numbers, target)
        assert ast_eval(e.answer) == target  # independent evaluator agrees
        assert ast_literals(e.answer) == sorted(numbers)


def test_countdown_check_accepts_valid_expressions():
    assert countdown_check("(25 - 7) * 2 + 12", [2, 7, 12, 25], 48)
    assert countdown_check("  (25−7)×2÷1 ", [25, 7, 2, 1], 36)  # unicode operator aliases
    assert countdown_check("8 / (3 - 8 / 3)", [3, 3, 8, 8], 24)  # fractional intermediate, exact
    assert countdown_check("(" * 20 + "3 + 7" + ")" * 20, [3, 7], 10)  # nesting 20 is allowed
    assert countdown_check("+".join(["1"] * 100), [1] * 100, 100)  # 199 characters


@pytest.mark.parametrize("expression,numbers,target", [
    ("__import__('os').system('touch x')", [3, 7], 10),
    ("9**9**9**9", [9, 9, 9, 9], 9),
    ("(" * 100000 + "1" + ")" * 100000, [1], 1),
    ("1+" * 500000 + "1", [1], 1),  # a megabyte of text
    ("1e9999", [1, 9999], 10000),
    ("３ + ７", [3, 7], 10),  # full-width look-alike digits
    ("3 + 3 + 7", [3, 7], 13),  # a number used twice
    ("3 * 7", [2, 3, 7], 21),  # a number omitted
    ("3 * 7", [3, 7], 22),  # wrong target
    ("25 / (3 - 3) + 7", [3, 3, 7, 25], 32),  # division by zero
    ("(" * 21 + "3 + 7" + ")" * 21, [3, 7], 10),  # nesting 21
    ("+".join(["1"] * 101), [1] * 101, 101),  # 201 characters
    ("-3 + 13", [3, 13], 10),  # unary minus is not an allowed operation
    ("3 + 7 = 10", [3, 7], 10),
    ("2^3", [2, 3], 8),
    ("1.5 * 2", [1, 5, 2], 3),
    ("0x10", [0, 10], 16),
    ("abs(3)", [3], 3),
    ("(3 + 7", [3, 7], 10),
    ("3 + 7)", [3, 7], 10),
    ("", [], 0),
    (None, [3], 3),
    ("3 + 7", [3, True], 10),
    ("3 + 7", [3, 7], "10"),
])
def test_countdown_check_rejects_bad_input_fast(expression, numbers, target):
    start = time.perf_counter()
    assert countdown_check(expression, numbers, target) is False
    assert time.perf_counter() - start < 0.5


def test_extract_countdown_expression():
    text = "<think>try 25-7=18</think>\n<answer> (25 - 7) * 2 + 12 = 48 </answer>"
    assert extract_countdown_expression(text) == "(25 - 7) * 2 + 12"
    assert extract_countdown_expression("<answer>1+2</answer> then <answer>3 * 16</answer>") == "3 * 16"
    assert extract_countdown_expression("Let me think.\n3 * 16 = 48\n") == "3 * 16"
    assert extract_countdown_expression("<answer>\n3 * 16\n</answer>") == "3 * 16"
    assert extract_countdown_expression("") is None
    assert extract_countdown_expression(" \n \n") is None
    assert extract_countdown_expression("<answer></answer>") is None
    e = countdown(1, seed=0)[0]
    restated = f"<answer>{e.answer} = {e.metadata['target']}</answer>"
    assert countdown_check(extract_countdown_expression(restated), e.metadata["numbers"], e.metadata["target"])
    start = time.perf_counter()
    extract_countdown_expression("<answer>" * 100_000 + " " * 1_000_000 + "= 5</answer>")
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------------------------------------
# Linear equations
# ------------------------------------------------------------------------------------------------


def test_linear_one_variable_answer_satisfies_equation():
    examples = linear_equations(80, seed=5, n_vars=1, max_coef=9)
    assert any("/" in e.answer for e in examples)  # rational answers occur
    for e in examples:
        (a, b), (c, d) = e.metadata["lhs"], e.metadata["rhs"]
        x = Fraction(e.answer)
        assert a * x + b == c * x + d, e
        assert a != c
        assert e.answer == str(x.numerator) if x.denominator == 1 else e.answer == f"{x.numerator}/{x.denominator}"
        # The prompt states exactly the stored equation.
        m = re.fullmatch(r"Solve for x: (.+) = (.+)\.", e.prompt)
        assert m, e.prompt
        assert parse_linear_side(m.group(1), ["x"]) == ([a], b)
        assert parse_linear_side(m.group(2), ["x"]) == ([c], d)
        assert all(abs(v) <= 9 for v in (a, b, c, d))


@pytest.mark.parametrize("n_vars", [2, 3])
def test_linear_systems_are_nonsingular_and_solved(n_vars):
    variables = ["x", "y", "z"][:n_vars]
    examples = linear_equations(40, seed=9, n_vars=n_vars, max_coef=6)
    for e in examples:
        matrix, constants = e.metadata["coefficients"], e.metadata["constants"]
        assert e.metadata["variables"] == variables
        assert det([[Fraction(v) for v in row] for row in matrix]) != 0
        solution = parse_answer_tuple(e.answer)
        assert len(solution) == n_vars
        for row, b in zip(matrix, constants):
            assert sum(Fraction(coef) * v for coef, v in zip(row, solution)) == b
            assert all(abs(coef) <= 6 for coef in row)
        equations = e.prompt.splitlines()[1:1 + n_vars]
        for line, row, b in zip(equations, matrix, constants):
            lhs, rhs = line.split(" = ")
            assert parse_linear_side(lhs, variables) == (row, 0)
            assert int(rhs) == b
    assert any("/" in e.answer for e in examples)


# ------------------------------------------------------------------------------------------------
# Word problems
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_word_problem_answers_follow_from_prompt_numbers(steps):
    examples = word_problems(120, seed=2, steps=steps)
    templates = {e.metadata["template"] for e in examples}
    assert len(templates) >= 6, templates
    for e in examples:
        solution = e.metadata["solution"]
        value = ast_eval(solution)
        assert value.denominator == 1 and value >= 0 and e.answer == str(value.numerator), e
        # Every intermediate division in the solution is exact (integer story quantities).
        for node in ast.walk(ast.parse(solution, mode="eval")):
            if isinstance(node, ast.BinOp):
                assert ast_eval(ast.unparse(node)).denominator == 1, (solution, ast.unparse(node))
        prompt_numbers = set(ints_in(e.prompt))
        assert set(ast_literals(solution)) <= prompt_numbers, e
        assert e.metadata["difficulty"] == {"steps": steps}


# ------------------------------------------------------------------------------------------------
# Bilingual
# ------------------------------------------------------------------------------------------------


def test_bilingual_pairs_share_answers_and_numbers():
    examples = bilingual(60, seed=4, language="both")
    assert len(examples) == 120
    templates = set()
    for en, zh in zip(examples[::2], examples[1::2]):
        assert en.metadata["pair_id"] == zh.metadata["pair_id"]
        assert (en.metadata["language"], zh.metadata["language"]) == ("en", "zh")
        assert en.answer == zh.answer
        assert CJK.search(zh.prompt) and not CJK.search(en.prompt)
        assert sorted(ints_in(en.prompt)) == sorted(ints_in(zh.prompt))  # same underlying problem
        assert ast_eval(en.metadata["solution"]) == Fraction(int(en.answer))
        assert set(ast_literals(en.metadata["solution"])) <= set(ints_in(zh.prompt))
        templates.add(en.metadata["template"])
    assert len(templates) >= 4
    # Single-language modes give the same problems as the matching half of "both".
    assert bilingual(60, seed=4, language="en") == examples[::2]
    assert bilingual(60, seed=4, language="zh") == examples[1::2]


# ------------------------------------------------------------------------------------------------
# Benchmarks
# ------------------------------------------------------------------------------------------------

needs_data = pytest.mark.skipif(not default_data_dir().is_dir(),
                                reason="shared data folder ../shared/data not present")


@needs_data
def test_benchmark_record_counts_and_ids():
    for name, count in {"gsm8k": 1319, "math500": 500, "aime24": 30, "amc23": 40}.items():
        examples = load_benchmark(name)
        assert len(examples) == count, name
        assert len({e.id for e in examples}) == count
        assert all(e.id.startswith(f"{name}-") and e.prompt and e.answer for e in examples)


@needs_data
def test_gsm8k_answers():
    examples = load_benchmark("gsm8k")
    assert examples[0].id == "gsm8k-0" and examples[0].answer == "18"
    assert examples[0].prompt.startswith("Janet")
    assert all(re.fullmatch(r"-?\d+", e.answer) for e in examples)
    with_commas = [e for e in examples if "," in e.metadata["raw_answer"].rsplit("####", 1)[1]]
    assert with_commas  # e.g. "#### 1,450,000" -> "1450000"
    for e in with_commas:
        assert e.answer == e.metadata["raw_answer"].rsplit("####", 1)[1].strip().replace(",", "")
    assert load_benchmark("gsm8k", limit=5) == examples[:5]


@needs_data
def test_math500_fields():
    first = load_benchmark("math500", limit=1)[0]
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.metadata["subject"] == "Precalculus" and first.metadata["level"] == 2
    assert first.id == "math500-test/precalculus/807.json"
    assert "\\boxed" in first.metadata["solution"]


@needs_data
def test_aime24_answers_are_integers_without_leading_zeros():
    examples = load_benchmark("aime24")
    assert all(e.answer.isdigit() and str(int(e.answer)) == e.answer for e in examples)
    leading_zero = [e for e in examples if str(e.metadata["raw_answer"]).startswith("0")]
    assert leading_zero, "the AIME 2024 file writes e.g. 25 as '025'"
    for e in leading_zero:
        assert int(e.metadata["raw_answer"]) == int(e.answer)
    by_id = {e.id: e for e in examples}
    assert by_id["aime24-67"].answer == "25" and by_id["aime24-67"].metadata["raw_answer"] == "025"
    assert by_id["aime24-60"].answer == "204"


@needs_data
def test_amc23_answers():
    examples = load_benchmark("amc23")
    assert examples[0].id == "amc23-0" and examples[0].answer == "27"
    assert examples[0].metadata["raw_answer"] == 27.0
    assert {e.id: e.answer for e in examples}["amc23-17"] == "-1"
    assert all(re.fullmatch(r"-?\d+", e.answer) for e in examples)


def test_benchmark_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="valid names: aime24, amc23, gsm8k, math500"):
        load_benchmark("gsm8", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / BENCHMARKS["gsm8k"]))):
        load_benchmark("gsm8k", data_dir=tmp_path)
    good = json.dumps({"question": "1 + 1?", "answer": "2\n#### 2"})
    monkeypatch.setitem(benchmarks_module.BENCHMARKS, "gsm8k", "bad.jsonl")
    (tmp_path / "bad.jsonl").write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        load_benchmark("gsm8k", data_dir=tmp_path)


@pytest.mark.parametrize("name,records,reason", [
    ("gsm8k", [{"question": "q", "answer": "2"}], "####"),
    ("gsm8k", [{"question": "q"}], "missing field 'answer'"),
    ("gsm8k", [{"question": "q", "answer": "x\n#### two"}], "not a number"),
    ("math500", [{"problem": "p", "solution": "s", "answer": "1", "subject": "Algebra", "level": 1}],
     "unique_id"),
    ("aime24", [{"id": 1, "problem": "p", "solution": "s", "answer": "12a"}], "not a non-negative integer"),
    ("amc23", [{"id": 1, "problem": "p", "answer": "27"}], "'answer' has type str"),
    ("amc23", [[1, 2]], "expected a JSON object"),
])
def test_malformed_line_reports_file_and_line(tmp_path, name, records, reason):
    valid = {
        "gsm8k": {"question": "q", "answer": "so\n#### 1,234"},
        "math500": {"problem": "p", "solution": "s", "answer": "1", "subject": "Algebra", "level": 1,
                    "unique_id": "test/algebra/1.json"},
        "aime24": {"id": 0, "problem": "p", "solution": "s", "answer": "007"},
        "amc23": {"id": 0, "problem": "p", "answer": 2.5},
    }[name]
    # line 1 valid, line 2 blank (skipped), line 3 malformed
    lines = [json.dumps(valid), "", *(json.dumps(r) for r in records)]
    path = tmp_path / BENCHMARKS[name]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{BENCHMARKS[name]}:3: ") + ".*" + re.escape(reason)):
        load_benchmark(name, data_dir=tmp_path)
    first = load_benchmark(name, data_dir=tmp_path, limit=1)[0]  # reading stops before the bad line
    assert first.answer == {"gsm8k": "1234", "math500": "1", "aime24": "7", "amc23": "2.5"}[name]


def test_world_test_split_is_held_out_of_every_training_draw_at_the_same_difficulty_mix():
    from collections import Counter

    from r1jax.tasks.arithmetic import arithmetic_chain
    from r1jax.tasks.world import WORLD_TEST_SHARE, world_split

    test = generate("world", 600, 11, split="test")
    test_prompts = {e.prompt for e in test}
    for n, seed in [(5000, 0), (300, 7), (2000, 11)]:  # any size and seed, the test seed included
        train = generate("world", n, seed)
        assert len(train) == n and not test_prompts & {e.prompt for e in train}
    # the split is a property of the expression: the same in both languages, a fixed share of all problems
    zh = generate("world", 600, 11, split="test", language="zh")
    assert [e.answer for e in zh] == [e.answer for e in test]
    everything = arithmetic_chain(6000, 3, max_value=9, ops="+-")
    share = sum(world_split(e.prompt[len("Compute "):-1]) == "test" for e in everything) / len(everything)
    assert abs(share - 1 / WORLD_TEST_SHARE) < 0.02
    ops_train = Counter(e.metadata["n_ops"] for e in generate("world", 600, 11))
    ops_test = Counter(e.metadata["n_ops"] for e in test)
    assert all(abs(ops_train[k] - ops_test[k]) < 60 for k in (1, 2, 3)), (ops_train, ops_test)
    with pytest.raises(ValueError, match="split"):
        generate("world", 3, 0, split="heldout")
