"""Write a KnowEdit-schema file (the WikiData_counterfact layout of EasyEdit's KnowEdit
release) from the EasyEdit release of CounterFact, so the knowedit loader can be run at full
size on public data when the KnowEdit files themselves are not at hand.

    python scripts/knowedit_from_easyedit.py \
        ../shared/datasets/counterfact/counterfact_easyedit_val.json data_root/knowedit/counterfact.json

Field by field (one JSON object per case, in a JSON list):

    case_id                -> case_id (kept, so load reports name the same cases)
    subject, prompt,       -> subject, prompt, target_new (as given)
      target_new
    ground_truth (string)  -> ground_truth: [[ground_truth]] (KnowEdit's list of alias lists)
    rephrase_prompt        -> rephrase_prompt
    locality_prompt,       -> locality.Relation_Specificity [{prompt, ground_truth: [answer]}]
      locality_ground_truth
    (none)                 -> portability: {} (the source has no portability prompts)

Nothing is filtered here: the loader's own policy (drop, count and name) applies to the
written file exactly as to a KnowEdit file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def convert(case: dict) -> dict:
    out = {"case_id": case["case_id"], "subject": case["subject"], "prompt": case["prompt"],
           "target_new": case["target_new"], "ground_truth": [[case["ground_truth"]]],
           "rephrase_prompt": case.get("rephrase_prompt"), "locality": {}, "portability": {}}
    if case.get("locality_prompt"):
        out["locality"]["Relation_Specificity"] = [
            {"prompt": case["locality_prompt"], "ground_truth": [case["locality_ground_truth"]]}]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    rows = json.loads(src.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise SystemExit(f"{src}: expected a JSON list of cases, got {type(rows).__name__}")
    out = []
    for i, case in enumerate(rows):
        try:
            out.append(convert(case))
        except KeyError as err:
            raise SystemExit(f"{src}: record {i}: missing field {err}") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(dst)
    print(f"{dst}: {len(out)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
