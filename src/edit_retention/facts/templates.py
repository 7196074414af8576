"""Prompt templates of the built-in relations: one main prompt and its paraphrases each.

Usage::

    from edit_retention.facts.templates import RELATIONS, relation
    rel = relation("P36")
    rel.prompt            # "The capital of {} is"
    rel.paraphrases       # 8 other wordings of the same question

Every template has exactly one ``{}`` (the subject) and ends right where the object
goes; the object follows after one space ("The capital of France is" + " Paris"). The
wording is our own (not copied from CounterFact or ParaRel), so the held-out paraphrases
used for evaluation were never seen by any of those datasets' editors.

Why these relations (ids follow Wikidata where one fits):

* ``P36``  country -> capital city. The canonical editing fact ("The capital of France
  is Rome"); in CounterFact; a 135M model knows the capitals of large countries.
* ``P30``  country -> continent. Only six objects, so every fact has neighbours sharing
  its true object (a clean neighbourhood test) and counterfactuals are plausible.
* ``P38``  country -> currency (ISO 4217 English name, unit in lower case as English
  writes it: "Japanese yen", "euro"). A different object type (not a place).
* ``P37``  country -> official/main language (the first language code GeoNames lists
  for the country, named in English by Babel). Also in CounterFact.
* ``P17``  city -> country, for cities of at least one million people. Subjects are
  cities, not countries, so edits hit other subject tokens than the four relations
  above.
* ``P131`` first-level subdivision (state/province) -> country. Wikidata's P131 is
  "located in the administrative territorial entity"; we ask for the top of that chain,
  the country. Kept apart from ``P17`` because a subdivision and a city may share a
  name (São Paulo), which would repeat a case id.
* ``P1376`` capital -> country (optional, not in :data:`DEFAULT_RELATIONS`): it is
  ``P36`` read backwards and its subjects overlap ``P17``'s, so editing both at once
  would put contradicting edits on the same subject.

Wording avoids claims that are false for some subjects (no "seat of government": the
Netherlands and Bolivia have it elsewhere than the capital; no "most people speak":
English is official in India and Nigeria without being the majority language).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..io import InputError


@dataclass(frozen=True)
class Relation:
    """One relation: what it links, its main prompt and its paraphrase templates."""
    id: str
    description: str
    prompt: str
    paraphrases: tuple[str, ...]


RELATIONS: dict[str, Relation] = {r.id: r for r in (
    Relation(
        "P36", "country -> capital city",
        "The capital of {} is",
        ("The capital city of {} is",
         "{}'s capital city is",
         "{}'s capital is",
         "The national capital of {} is",
         "The city that serves as the capital of {} is",
         "In {}, the capital city is",
         "{} has its capital in",
         "{}, whose capital is"),
    ),
    Relation(
        "P30", "country -> continent",
        "{} is located in the continent of",
        ("{} is a country in the continent of",
         "{} is part of the continent of",
         "{} belongs to the continent of",
         "The continent where {} is located is",
         "{} lies on the continent of",
         "On a map, {} can be found in the continent of",
         "{} is a nation on the continent of",
         "The country of {} is situated in"),
    ),
    Relation(
        "P38", "country -> currency",
        "The official currency of {} is the",
        ("The currency of {} is the",
         "The currency used in {} is the",
         "The national currency of {} is the",
         "In {}, people pay with the",
         "The legal tender in {} is the",
         "{}'s currency is the",
         "The money used in {} is the",
         "In {}, prices are paid in the"),
    ),
    Relation(
        "P37", "country -> official/main language",
        "The official language of {} is",
        ("The main language of {} is",
         "In {}, the official language is",
         "{}'s official language is",
         "The national language of {} is",
         "The primary language of {} is",
         "In {}, government documents are written in",
         "The principal official language of {} is",
         "In {}, laws are published in"),
    ),
    Relation(
        "P17", "city -> country",
        "{} is located in the country of",
        ("{} is a city in the country of",
         "The city of {} is located in the country of",
         "{} is a large city in the country of",
         "The country in which {} is located is",
         "{} lies in the country of",
         "The city of {} belongs to the country of",
         "{} can be found in the country of",
         "{} is an urban centre in the country of"),
    ),
    Relation(
        "P131", "first-level subdivision (state/province) -> country",
        "{} is a region in the country of",
        ("{} is a state or province of the country of",
         "The region of {} is part of the country of",
         "{} is an administrative division of the country of",
         "{} is located in the country of",
         "The country that {} belongs to is",
         "{} is governed as part of the country of",
         "{} is one of the regions of the country of",
         "The territory of {} lies within the country of"),
    ),
    Relation(
        "P1376", "capital city -> country",
        "{} is the capital of",
        ("{} is the capital city of",
         "{} serves as the capital of",
         "The city of {} is the capital of",
         "{} is the national capital of",
         "{}, the capital city of",
         "{} is known as the capital of",
         "{} is the capital of the country of",
         "{} has been chosen as the capital of"),
    ),
)}

DEFAULT_RELATIONS: tuple[str, ...] = ("P36", "P30", "P38", "P37", "P17", "P131")


def relation(rel_id: str) -> Relation:
    """The relation with this id; InputError lists the known ids."""
    if rel_id not in RELATIONS:
        raise InputError(f"unknown relation {rel_id!r} (known: {', '.join(sorted(RELATIONS))})")
    return RELATIONS[rel_id]
