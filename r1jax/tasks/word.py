"""The word problems family: templated GSM8K-style stories in English with integer answers.

    word_problems  "Alice has 12 apples. ... How many apples does Alice have now?"  -> "17"
"""

from __future__ import annotations

import random
from typing import Callable

from r1jax.tasks.common import Example, check_int, task_metadata

__all__ = ["WordTemplate", "word_problems"]

_NAMES = ["Alice", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
          "Keiko", "Liam", "Maya", "Noah", "Priya", "Omar"]
_OBJECTS = [("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("pencil", "pencils"),
            ("cookie", "cookies"), ("book", "books"), ("shell", "shells"), ("card", "cards")]
_GOODS = [("notebook", "notebooks"), ("pen", "pens"), ("sandwich", "sandwiches"), ("ticket", "tickets"),
          ("toy car", "toy cars"), ("plant", "plants"), ("T-shirt", "T-shirts"), ("mug", "mugs")]
_SPEND_ON = ["a jacket", "books", "groceries", "a concert ticket", "a gift", "lunch", "art supplies"]
_VEHICLES = [("train", "km", 60, 120), ("car", "km", 40, 90), ("cyclist", "miles", 8, 20),
             ("bus", "miles", 30, 60), ("runner", "km", 6, 12)]
_CONTAINERS = [("truck", "trucks"), ("crate", "crates"), ("box", "boxes"), ("bag", "bags")]

# Each template: (rng, steps) -> (prompt, answer, solution expression over the prompt's numbers).
WordTemplate = Callable[[random.Random, int], tuple[str, int, str]]


def _word_collection(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Start with some objects, then `steps` events that add or remove some."""
    name, other = rng.sample(_NAMES, 2)
    _, plural = rng.choice(_OBJECTS)
    count = rng.randint(10, 50)
    sentences = [f"{name} has {count} {plural}."]
    expr = str(count)
    for _ in range(steps):
        kind = rng.choice(("find", "give", "packs"))
        if kind == "give" and count > 1:
            k = rng.randint(1, count - 1)
            sentences.append(f"{name} gives {k} {plural} to {other}.")
            count -= k
            expr += f" - {k}"
        elif kind == "packs":
            packs, per = rng.randint(2, 5), rng.randint(2, 10)
            sentences.append(f"Then {name} buys {packs} packs with {per} {plural} in each pack.")
            count += packs * per
            expr += f" + {packs} * {per}"
        else:
            k = rng.randint(1, 20)
            sentences.append(f"{name} finds {k} more {plural}.")
            count += k
            expr += f" + {k}"
    sentences.append(f"How many {plural} does {name} have now?")
    return " ".join(sentences), count, expr


def _word_shopping(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Buy `steps` kinds of goods at unit prices; total cost."""
    name = rng.choice(_NAMES)
    goods = rng.sample(_GOODS, steps)
    purchases = [(rng.randint(2, 9), rng.randint(1, 20), g) for g in goods]
    phrases = [f"{q} {g[1]} for ${p} each" for q, p, g in purchases]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    prompt = f"{name} buys {listing}. How many dollars does {name} spend in total?"
    total = sum(q * p for q, p, _ in purchases)
    return prompt, total, " + ".join(f"{q} * {p}" for q, p, _ in purchases)


def _word_spending(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Money left after spending fractions of it and fixed amounts."""
    name = rng.choice(_NAMES)
    things = rng.sample(_SPEND_ON, steps)
    money = rng.randint(2, 10) * 60  # divisible by 2, 3, 4, 5 so the first fraction is exact
    sentences = [f"{name} has ${money}."]
    expr = str(money)
    for j, thing in enumerate(things):
        then = "" if j == 0 else "Then "
        divisors = [d for d in (2, 3, 4, 5) if money % d == 0]
        if divisors and rng.random() < 0.5:
            d = rng.choice(divisors)
            what = "the money" if j == 0 else "the remaining money"
            sentences.append(f"{then}{name} spends 1/{d} of {what} on {thing}.")
            expr = f"({expr}) - ({expr}) / {d}"
            money -= money // d
        else:
            # At most half of what is left, so money stays positive through every stage.
            k = rng.randint(1, max(1, money // 2))
            sentences.append(f"{then}{name} spends ${k} on {thing}.")
            expr = f"({expr}) - {k}"
            money -= k
    sentences.append(f"How many dollars does {name} have left?")
    return " ".join(sentences), money, expr


def _word_ages(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """A chain of age relations from the youngest person to the one asked about."""
    people = rng.sample(_NAMES, steps + 1)
    age = rng.randint(3, 15)
    expr = str(age)
    facts = [f"{people[0]} is {age} years old."]
    for older, younger in zip(people[1:], people[:-1]):
        kind = rng.choice(("older", "times", "younger"))
        if kind == "times" and age * 3 <= 90:
            k = rng.randint(2, 3)
            facts.append(f"{older} is {k} times as old as {younger}.")
            age *= k
            expr = f"({expr}) * {k}"
        elif kind == "younger" and age > 2:
            d = rng.randint(1, age - 1)
            facts.append(f"{older} is {d} years younger than {younger}.")
            age -= d
            expr = f"({expr}) - {d}"
        else:
            d = rng.randint(1, 10)
            facts.append(f"{older} is {d} years older than {younger}.")
            age += d
            expr = f"({expr}) + {d}"
    facts.reverse()  # state the relations top-down, as such problems are usually written
    return " ".join(facts) + f" How old is {people[-1]}?", age, expr


def _word_sharing(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Objects shared equally among friends, possibly after buying boxes and keeping some."""
    name = rng.choice(_NAMES)
    single, plural = rng.choice(_OBJECTS)
    if steps == 1:
        friends = rng.randint(2, 8)
        each = rng.randint(2, 15)
        total = each * friends
        prompt = (f"{name} has {total} {plural} and shares them equally among {friends} friends. "
                  f"How many {plural} does each friend get?")
        return prompt, each, f"{total} / {friends}"
    boxes, per_box = rng.randint(2, 9), rng.randint(3, 12)
    count = boxes * per_box
    expr = f"{boxes} * {per_box}"
    sentences = [f"{name} buys {boxes} boxes of {plural} with {per_box} {plural} in each box."]
    for _ in range(steps - 2):  # extra steps: more objects arrive before sharing
        k = rng.randint(1, 15)
        sentences.append(f"A neighbour gives {name} {k} more {plural}.")
        count += k
        expr += f" + {k}"
    # keep = count % friends < friends and friends <= count // 2, so each friend gets >= 1.
    friends = rng.randint(2, min(8, count // 2))
    keep = count % friends
    share = count - keep
    if keep:
        kept = single if keep == 1 else plural
        sentences.append(f"{name} keeps {keep} {kept} and shares the rest equally among {friends} friends.")
        expr = f"({expr} - {keep}) / {friends}"
    else:
        sentences.append(f"{name} shares all of them equally among {friends} friends.")
        expr = f"({expr}) / {friends}"
    sentences.append(f"How many {plural} does each friend get?")
    return " ".join(sentences), share // friends, expr


def _word_rates(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Distance from speed x time over `steps` legs of a trip."""
    vehicle, unit, lo, hi = rng.choice(_VEHICLES)
    legs = [(rng.randint(lo, hi), rng.randint(1, 5)) for _ in range(steps)]
    sentences = []
    for j, (speed, hours) in enumerate(legs):
        subject = f"A {vehicle}" if j == 0 else f"Then the {vehicle}"
        hour_word = "hour" if hours == 1 else "hours"
        sentences.append(f"{subject} travels at {speed} {unit} per hour for {hours} {hour_word}.")
    sentences.append(f"How many {unit} does the {vehicle} travel in total?")
    total = sum(s * h for s, h in legs)
    return " ".join(sentences), total, " + ".join(f"{s} * {h}" for s, h in legs)


def _word_groups(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Nested groups (trucks of crates of boxes ...): a product of `steps` + 1 factors."""
    name = rng.choice(_NAMES)
    _, plural = rng.choice(_OBJECTS)
    containers = _CONTAINERS[len(_CONTAINERS) - steps:]
    factors = [rng.randint(2, 9) for _ in range(steps + 1)]
    sentences = [f"{name} has {factors[0]} {containers[0][1]}."]
    inner = [c[1] for c in containers[1:]] + [plural]
    for (outer_single, _), what, k in zip(containers, inner, factors[1:]):
        sentences.append(f"Each {outer_single} holds {k} {what}.")
    sentences.append(f"How many {plural} does {name} have in total?")
    total = 1
    for k in factors:
        total *= k
    return " ".join(sentences), total, " * ".join(map(str, factors))


_WORD_TEMPLATES: dict[str, WordTemplate] = {
    "collection": _word_collection,
    "shopping": _word_shopping,
    "spending": _word_spending,
    "ages": _word_ages,
    "sharing": _word_sharing,
    "rates": _word_rates,
    "groups": _word_groups,
}


def word_problems(n: int, seed: int, *, steps: int = 2) -> list[Example]:
    """Templated GSM8K-style word problems with integer answers.

    steps (1-4) is the number of stages in each story (events, purchases, relations, legs of
    a trip, nesting levels), so larger values need more arithmetic steps.  Templates: collection
    (gain/lose objects), shopping (total cost), spending (money left after fractions/amounts),
    ages (chain of relations), sharing (equal shares), rates (distance), groups (nested counts).
    metadata["solution"] is an arithmetic expression over the prompt's numbers giving the answer.
    """
    check_int("n", n, 0)
    check_int("seed", seed, -(2**63))
    check_int("steps", steps, 1, 4)
    rng = random.Random(seed)
    names = sorted(_WORD_TEMPLATES)
    examples = []
    for i in range(n):
        template = rng.choice(names)
        prompt, answer, solution = _WORD_TEMPLATES[template](rng, steps)
        examples.append(Example(
            id=f"word-{seed}-{i}",
            prompt=prompt,
            answer=str(answer),
            metadata=task_metadata("word", seed, i, {"steps": steps}, template=template, solution=solution),
        ))
    return examples
