"""Generator of the built-in `arith` task: short multi-step arithmetic word problems.

Each template draws its numbers from a `random.Random` so a seed fixes the whole dataset. Answers are
positive integers. The templates mix 2-4 step problems with the traps small models fall into:
rounding up ("how many buses"), remainders, percentages, unit conversion (minutes -> hours),
"how many more" comparisons, and an irrelevant number added to some questions.
"""

from __future__ import annotations

import random
from typing import Callable

Item = tuple[str, int, str]  # question, answer, worked solution

NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kira",
         "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq")
DISTRACTORS = (
    "The shop has been open for {n} years.",
    "It is {n} degrees outside.",
    "Their house number is {n}.",
    "The trip to the store takes {n} minutes.",
)


def _hours(h: int) -> str:
    return f"{h} hour" if h == 1 else f"{h} hours"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def t_bake(r: random.Random, n: str) -> Item:
    a, b = r.randint(3, 9), r.randint(6, 12)
    c = r.randint(5, a * b // 2)
    d = r.randint(1, a * b - c - 1)
    q = (f"{n} bakes {a} trays of {b} muffins. {n} sells {c} muffins in the morning and {d} in the "
         f"afternoon. How many muffins are left?")
    return q, a * b - c - d, f"{a}*{b} = {a * b} muffins; {a * b} - {c} - {d} = {a * b - c - d}."


def t_change(r: random.Random, n: str) -> Item:
    a, p, b, q_ = r.randint(2, 6), r.randint(2, 9), r.randint(2, 8), r.randint(1, 4)
    total = a * p + b * q_
    bill = next(x for x in (20, 50, 100) if x > total)
    q = (f"{n} buys {a} notebooks at ${p} each and {b} pens at ${q_} each, and pays with a ${bill} "
         f"bill. How much change, in dollars, does {n} get?")
    sol = f"{a}*{p} + {b}*{q_} = {total} dollars; {bill} - {total} = {bill - total}."
    return q, bill - total, sol


def t_buses(r: random.Random, n: str) -> Item:
    cap = r.choice((20, 25, 30, 40, 45))
    while True:
        kids, teachers = r.randint(2 * cap, 6 * cap), r.randint(3, 9)
        if (kids + teachers) % cap:
            break
    q = (f"A school takes {kids} students and {teachers} teachers on a trip. Each bus holds {cap} "
         f"people. How many buses are needed?")
    ans = _ceil_div(kids + teachers, cap)
    return q, ans, f"{kids} + {teachers} = {kids + teachers} people; {kids + teachers}/{cap} rounded up is {ans}."


def t_discount(r: random.Random, n: str) -> Item:
    pct = r.choice((10, 20, 25, 40, 50))
    price = r.choice((40, 60, 80, 100, 120, 160, 200))
    sale = price * (100 - pct) // 100
    coupon = r.randint(2, min(15, sale - 1))
    q = (f"A jacket costs ${price}. The store takes {pct}% off, and then {n} uses a coupon for "
         f"${coupon} off the sale price. How many dollars does {n} pay?")
    sol = f"{pct}% of {price} is {price - sale}, so the sale price is {sale}; {sale} - {coupon} = {sale - coupon}."
    return q, sale - coupon, sol


def t_trip(r: random.Random, n: str) -> Item:
    s1, h1, s2, h2 = r.randint(4, 12) * 5, r.randint(2, 5), r.randint(4, 12) * 5, r.randint(1, 4)
    q = (f"{n} drives at {s1} miles per hour for {_hours(h1)}, stops for lunch, then drives at {s2} "
         f"miles per hour for {_hours(h2)}. How many miles does {n} drive in total?")
    ans = s1 * h1 + s2 * h2
    return q, ans, f"{s1}*{h1} = {s1 * h1}; {s2}*{h2} = {s2 * h2}; total {ans} miles."


def t_practice(r: random.Random, n: str) -> Item:
    while True:
        m, w = r.randint(2, 12) * 5, r.randint(2, 18) * 5
        if (5 * m + 2 * w) % 60 == 0:
            break
    q = (f"{n} practices piano for {m} minutes every weekday and {w} minutes on each day of the "
         f"weekend. How many hours does {n} practice in one week?")
    total = 5 * m + 2 * w
    return q, total // 60, f"5*{m} + 2*{w} = {total} minutes = {total // 60} hours."


def t_half(r: random.Random, n: str) -> Item:
    while True:
        a, b, c = r.randint(5, 40), r.randint(2, 6), r.randint(4, 12)
        if (a + b * c) % 2 == 0:
            break
    q = (f"{n} has {a} stickers, buys {b} packs of {c} stickers each, and then gives half of all "
         f"the stickers to a friend. How many stickers does {n} have now?")
    tot = a + b * c
    return q, tot // 2, f"{a} + {b}*{c} = {tot}; half of {tot} is {tot // 2}."


def t_more(r: random.Random, n: str) -> Item:
    n2 = NAMES[(NAMES.index(n) + 7) % len(NAMES)]
    a, k = r.randint(4, 20), r.randint(2, 5)
    d = r.randint(1, (k - 1) * a - 1)
    q = (f"{n} has {a} marbles. {n2} has {k} times as many marbles as {n}, but then loses {d} of "
         f"them. How many more marbles does {n2} have than {n} now?")
    ans = k * a - d - a
    return q, ans, f"{k}*{a} = {k * a}; {k * a} - {d} = {k * a - d}; {k * a - d} - {a} = {ans}."


def t_ages(r: random.Random, n: str) -> Item:
    a, d, y = r.randint(4, 15), r.randint(1, 9), r.randint(2, 10)
    q = (f"{n} is {a} years old. {n}'s aunt is {d} years older than twice {n}'s age. What will "
         f"the sum of their ages be in {y} years?")
    aunt = 2 * a + d
    ans = a + y + aunt + y
    return q, ans, f"Aunt: 2*{a} + {d} = {aunt}. In {y} years: {a + y} + {aunt + y} = {ans}."


def t_share(r: random.Random, n: str) -> Item:
    while True:
        a, b, k = r.randint(10, 40), r.randint(10, 40), r.randint(3, 8)
        if (a + b) % k:
            break
    q = (f"{n} picks {a} apples and {b} pears, shares as many pieces of fruit as possible equally "
         f"among {k} friends, and keeps the rest. How many pieces of fruit does {n} keep?")
    ans = (a + b) % k
    return q, ans, f"{a} + {b} = {a + b}; {a + b} = {k}*{(a + b) // k} + {ans}, so {n} keeps {ans}."


def t_save(r: random.Random, n: str) -> Item:
    w = r.randint(10, 30)
    s = r.randint(2, w - 5)
    have, goal = r.randint(0, 40), r.randint(120, 400)
    q = (f"{n} earns ${w} a week and spends ${s} of it. {n} already has ${have} saved. How many "
         f"weeks will it take to have at least ${goal}?")
    ans = _ceil_div(goal - have, w - s)
    return q, ans, f"Saves {w} - {s} = {w - s} a week; needs {goal - have}; {goal - have}/{w - s} rounded up is {ans}."


def t_garden(r: random.Random, n: str) -> Item:
    rows, per, k, wk = r.randint(4, 12), r.randint(5, 15), r.randint(2, 6), r.randint(2, 5)
    while rows * per - k * wk <= 0:
        rows += 1
    q = (f"{n}'s garden has {rows} rows of {per} plants. Every week {k} plants die. How many plants "
         f"are left after {wk} weeks?")
    ans = rows * per - k * wk
    return q, ans, f"{rows}*{per} = {rows * per}; {k}*{wk} = {k * wk}; {rows * per} - {k * wk} = {ans}."


TEMPLATES: tuple[Callable[[random.Random, str], Item], ...] = (
    t_bake, t_change, t_buses, t_discount, t_trip, t_practice,
    t_half, t_more, t_ages, t_share, t_save, t_garden,
)


def _one(r: random.Random, i: int) -> dict[str, object]:
    template = TEMPLATES[i % len(TEMPLATES)]
    question, answer, solution = template(r, r.choice(NAMES))
    if r.random() < 0.3:
        extra = r.choice(DISTRACTORS).format(n=r.randint(3, 60))
        first, rest = question.split(". ", 1)
        question = f"{first}. {extra} {rest}"
    solution = f"{solution.rstrip('.')}. The answer is {answer}."
    return {"question": question, "answer": str(answer), "solution": solution,
            "template": template.__name__[2:]}


def generate(n: int, seed: int, *, exclude: set[str] | None = None) -> list[dict[str, object]]:
    """`n` distinct problems from `seed`, none whose question is in `exclude`."""
    r = random.Random(seed)
    seen = set(exclude or ())
    out: list[dict[str, object]] = []
    i = 0
    while len(out) < n:
        row = _one(r, i)
        i += 1
        if row["question"] not in seen:
            seen.add(str(row["question"]))
            out.append(row)
    return out
