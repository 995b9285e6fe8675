"""Concept queries for `pixql demo`: the Coactive tutorial's three queries plus text concepts."""
from __future__ import annotations

from .library import install_defaults
from .registry import create, exists


def demo_queries(wh) -> list[tuple[str, str]]:
    install_defaults(wh)
    for name, prompt in (("cat", "cat"), ("coffee", "coffee")):
        if not exists(wh, name):
            create(wh, name, prompts=[prompt], description=f"text concept from the prompt {prompt!r}")
    file = "regexp_extract(path, '[^/]+$') AS file"
    return [
        ("Text concepts: which photos show a cat or coffee?",
         f"SELECT {file}, round(cat_prob, 3) AS cat_prob, round(coffee_prob, 3) AS coffee_prob "
         "FROM coactive_table WHERE cat = 1 OR coffee_prob > 0.1 ORDER BY greatest(cat_prob, coffee_prob) DESC"),
        ("Tutorial 3.2.1: find examples of a concept (here: cat)",
         f"SELECT coactive_image_id, {file} FROM coactive_table WHERE cat = 1 LIMIT 10"),
        ("Tutorial 3.2.2: count weapons",
         "SELECT count(coactive_image_id) AS weapon_count FROM coactive_table "
         "WHERE handgun = 1 OR rifle = 1 OR knife = 1"),
        ("Tutorial 3.2.3: a custom problematic score",
         f"SELECT coactive_image_id, {file}, round(GREATEST(blood_latest_prob, underwear_latest_prob, "
         "syringe_latest_prob), 4) AS problematic_score FROM coactive_table_adv "
         "ORDER BY problematic_score DESC LIMIT 20"),
    ]
