"""The bilingual family: the same small problems in English and Chinese, and its vocabulary.

    bilingual  "Xiaoming has 12 apples. ..." / "小明有 12 个苹果，..."  -> integer

`BI_NAMES` and `BI_OBJECTS` are also the vocabulary of the general prompts (r1jax.tasks.general),
so the embedded world's small tokenizer covers both.
"""

from __future__ import annotations

import random
from typing import Callable

from r1jax.tasks.common import LANGUAGES, Example, check_int, task_metadata

__all__ = ["BI_NAMES", "BI_OBJECTS", "bilingual"]

# (English name, Chinese name, he/she, him/her, his/her, 他/她)
BI_NAMES = [
    ("Xiaoming", "小明", "he", "him", "his", "他"),
    ("Xiaohong", "小红", "she", "her", "her", "她"),
    ("Lily", "莉莉", "she", "her", "her", "她"),
    ("Tom", "汤姆", "he", "him", "his", "他"),
    ("Li Lei", "李雷", "he", "him", "his", "他"),
    ("Han Meimei", "韩梅梅", "she", "her", "her", "她"),
    ("Wang Fang", "王芳", "she", "her", "her", "她"),
    ("Zhang Wei", "张伟", "he", "him", "his", "他"),
]
# (English singular, English plural, Chinese noun, Chinese measure word)
BI_OBJECTS = [
    ("apple", "apples", "苹果", "个"),
    ("pencil", "pencils", "铅笔", "支"),
    ("book", "books", "书", "本"),
    ("candy", "candies", "糖", "块"),
    ("orange", "oranges", "橘子", "个"),
    ("flower", "flowers", "花", "朵"),
    ("stamp", "stamps", "邮票", "张"),
    ("marble", "marbles", "弹珠", "颗"),
]


def _bi_add_sub(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, _, _, ta = rng.choice(BI_NAMES)
    _, plural, noun, m = rng.choice(BI_OBJECTS)
    a, b = rng.randint(5, 30), rng.randint(1, 20)
    c = rng.randint(1, a + b - 1)
    en = (f"{en_name} has {a} {plural}. {he.capitalize()} buys {b} more, then gives {c} to a friend. "
          f"How many {plural} does {he} have now?")
    zh = f"{zh_name}有 {a} {m}{noun}，又买了 {b} {m}，然后送给朋友 {c} {m}。{ta}现在有多少{m}{noun}？"
    return en, zh, a + b - c, f"{a} + {b} - {c}"


def _bi_change(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, _, _, ta = rng.choice(BI_NAMES)
    _, plural, noun, m = rng.choice(BI_OBJECTS)
    q, p = rng.randint(2, 9), rng.randint(1, 9)
    paid = 50 if q * p < 50 else 100
    en = (f"{en_name} buys {q} {plural} at {p} yuan each and pays with a {paid}-yuan note. "
          f"How much change does {he} get, in yuan?")
    zh = f"{zh_name}买了 {q} {m}{noun}，每{m} {p} 元，付了 {paid} 元。{ta}应找回多少元？"
    return en, zh, paid - q * p, f"{paid} - {q} * {p}"


def _bi_sharing(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, _, _, ta = rng.choice(BI_NAMES)
    _, plural, noun, m = rng.choice(BI_OBJECTS)
    friends, each = rng.randint(2, 9), rng.randint(2, 12)
    total = friends * each
    en = (f"{en_name} has {total} {plural} and shares them equally among {friends} friends. "
          f"How many {plural} does each friend get?")
    zh = f"{zh_name}有 {total} {m}{noun}，平均分给 {friends} 个朋友。每个朋友分到多少{m}{noun}？"
    return en, zh, each, f"{total} / {friends}"


def _bi_groups(rng: random.Random) -> tuple[str, str, int, str]:
    _, plural, noun, m = rng.choice(BI_OBJECTS)
    boxes, per = rng.randint(2, 9), rng.randint(2, 12)
    en = f"There are {boxes} boxes with {per} {plural} in each box. How many {plural} are there in total?"
    zh = f"有 {boxes} 盒{noun}，每盒 {per} {m}。一共有多少{m}{noun}？"
    return en, zh, boxes * per, f"{boxes} * {per}"


def _bi_distance(rng: random.Random) -> tuple[str, str, int, str]:
    speed, hours = rng.randint(4, 12) * 10, rng.randint(2, 6)
    en = f"A car travels {speed} kilometers per hour. How many kilometers does it travel in {hours} hours?"
    zh = f"一辆汽车每小时行驶 {speed} 千米。{hours} 小时行驶多少千米？"
    return en, zh, speed * hours, f"{speed} * {hours}"


def _bi_ages(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, him, his, ta = rng.choice(BI_NAMES)
    age, k = rng.randint(5, 12), rng.randint(3, 5)
    en = (f"{en_name} is {age} years old. {his.capitalize()} father is {k} times as old as {him}. "
          f"How old is {his} father?")
    zh = f"{zh_name}今年 {age} 岁，{ta}爸爸的年龄是{ta}的 {k} 倍。{ta}爸爸今年多少岁？"
    return en, zh, age * k, f"{age} * {k}"


_BI_TEMPLATES: dict[str, Callable[[random.Random], tuple[str, str, int, str]]] = {
    "add_sub": _bi_add_sub,
    "change": _bi_change,
    "sharing": _bi_sharing,
    "groups": _bi_groups,
    "distance": _bi_distance,
    "ages": _bi_ages,
}


def bilingual(n: int, seed: int, *, language: str = "both") -> list[Example]:
    """Small problems posed in English and/or Chinese (numbers as Arabic digits in both).

    n is the number of underlying problems.  language="en" or "zh" gives n Examples in that
    language; "both" gives 2n, an English then a Chinese Example per problem, sharing
    metadata["pair_id"] and the answer.  The problems do not depend on `language`, so the
    English Examples of "en" and of "both" are identical (same ids too: "bilingual-<seed>-<i>-en").
    """
    check_int("n", n, 0)
    check_int("seed", seed, -(2**63))
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    rng = random.Random(seed)
    names = sorted(_BI_TEMPLATES)
    wanted = ("en", "zh") if language == "both" else (language,)
    examples = []
    for i in range(n):
        template = rng.choice(names)
        en, zh, answer, solution = _BI_TEMPLATES[template](rng)
        pair_id = f"bilingual-{seed}-{i}"
        for lang in wanted:
            examples.append(Example(
                id=f"{pair_id}-{lang}",
                prompt=en if lang == "en" else zh,
                answer=str(answer),
                # No difficulty knobs: `language` only picks which renderings are returned, so
                # it is not recorded and the Examples are identical across language modes.
                metadata=task_metadata("bilingual", seed, i, {}, language=lang,
                                       pair_id=pair_id, template=template, solution=solution),
            ))
    return examples
