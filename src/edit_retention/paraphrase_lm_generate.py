"""Generation for the language-model paraphrase generator (``paraphrase_lm``): the few-shot
prompt and the seeded sampling of continuations.

Usage::

    from edit_retention.paraphrase_lm_generate import build_prompt, row_seed, sample_continuations
    prompt, chat = build_prompt(tok, "China", "The capital of China is")
    seeds = [[row_seed(0, "case-1", j) for j in range(8)]]
    conts = sample_continuations(model, tok, [prompt], seeds, not chat, LMArgs())   # [[(text, finished)]]

Generation. Each record's prompt is filled with its subject and the object left out
("The capital of China is ..."); the model is asked, with a few-shot prompt, to say the
same sentence beginning in other words. Tokenizers with a chat template get the
examples as user/assistant turns; others get a plain "Original: ... / Rewritten: ..."
prompt and stop at the first newline. ``n_candidates`` continuations are sampled per
record (temperature, top-p), ``max_new_tokens`` at most, in left-padded batches of
``batch_size`` records. Every continuation has its own ``torch.Generator``, seeded by
``(seed, case_id, j)``, and draws its tokens on the CPU, so a record's candidates do not
depend on the other records in the file or on the batch size (up to the float rounding
that padding can change in the model's logits) and are the same on CPU and GPU for the
same logits.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from .paraphrase_lm_args import LMArgs

EXAMPLES = (
    ("Anna Lindqvist", "The mother tongue of Anna Lindqvist is", "Anna Lindqvist grew up speaking"),
    ("Orvieto Bridge", "The Orvieto Bridge is located in the country of",
     "The country where the Orvieto Bridge stands is"),
    ("Kestrel Motors", "Kestrel Motors was founded in the city of", "The city where Kestrel Motors was founded is"),
)
INSTRUCTION = ("Rewrite the beginning of this sentence in other words with the same meaning. Keep "
               "\"{subject}\" exactly as written, leave out the missing last word and stop right where "
               "it would go.\n\nSentence beginning: {filled} ...")


def build_prompt(tok, subject: str, filled: str) -> tuple[str, bool]:
    """(prompt text, uses the chat template); the text already holds any special tokens."""
    if getattr(tok, "chat_template", None):
        messages = []
        for s, src, dst in EXAMPLES:
            messages.append({"role": "user", "content": INSTRUCTION.format(subject=s, filled=src)})
            messages.append({"role": "assistant", "content": f"{dst} ..."})
        messages.append({"role": "user", "content": INSTRUCTION.format(subject=subject, filled=filled)})
        return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), True
    head = ("Each sentence beginning is rewritten in other words with the same meaning; the name is "
            "kept and the rewrite stops where the missing last word goes.\n\n")
    shots = "".join(f"Original: {src} ...\nRewritten: {dst} ...\n\n" for _, src, dst in EXAMPLES)
    return head + shots + f"Original: {filled} ...\nRewritten:", False


def row_seed(seed: int, case_id: str, j: int) -> int:
    """Seed of a record's j-th continuation (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{case_id}:{j}".encode()).digest()[:8], "little") >> 1


def _sampler(seeds: Sequence[int], temperature: float, top_p: float):
    """A logits processor that samples each row's next token with the row's own generator
    and leaves only that token possible (generate then runs greedy)."""
    import torch
    from transformers import LogitsProcessor

    gens = [torch.Generator().manual_seed(s) for s in seeds]

    class SeededSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.float().cpu() / temperature, dim=-1)
            if top_p < 1.0:
                sp, idx = probs.sort(dim=-1, descending=True)
                drop = sp.cumsum(-1) - sp > top_p      # tokens after the nucleus
                probs = probs.scatter(-1, idx, sp.masked_fill(drop, 0.0))
            pick = torch.stack([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(gens)])
            out = torch.full_like(scores, float("-inf"))
            return out.scatter(1, pick.to(scores.device), 0.0)

    return SeededSampler()


def _stop_ids(model, tok, plain: bool) -> list[int]:
    ids = set()
    for v in (tok.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        ids.update(v if isinstance(v, list) else [v] if v is not None else [])
    if plain:
        nl = tok.encode("\n", add_special_tokens=False)
        if len(nl) == 1:
            ids.add(nl[0])
    return sorted(ids)


def sample_continuations(model, tok, prompts: Sequence[str], seeds: Sequence[Sequence[int]], plain: bool,
                         args: LMArgs) -> list[list[tuple[str, bool]]]:
    """For each prompt, one ``(text, finished)`` per seed: sampled continuations of at most
    ``args.max_new_tokens`` tokens; ``finished`` when a stop token ended them."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    n = len(seeds[0])
    if any(len(s) != n for s in seeds):
        raise ValueError("sample_continuations: every prompt needs the same number of seeds")
    stop = _stop_ids(model, tok, plain)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stop[0]
    side, tok.padding_side = tok.padding_side, "left"
    try:
        # a chat-template text already holds its special tokens
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=plain)
    finally:
        tok.padding_side = side
    dev = next(model.parameters()).device
    ids = enc["input_ids"].repeat_interleave(n, dim=0).to(dev)
    mask = enc["attention_mask"].repeat_interleave(n, dim=0).to(dev)
    cfg = GenerationConfig(do_sample=False, max_new_tokens=args.max_new_tokens, eos_token_id=stop,
                           pad_token_id=pad)
    sampler = _sampler([s for row in seeds for s in row], args.temperature, args.top_p)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg,
                             logits_processor=LogitsProcessorList([sampler]))
    new = out[:, ids.shape[1]:].tolist()
    results = []
    for row in new:
        cut = next((i for i, t in enumerate(row) if t in stop), None)
        text = tok.decode(row[:cut] if cut is not None else row, skip_special_tokens=True)
        results.append((text, cut is not None))
    return [results[i * n:(i + 1) * n] for i in range(len(prompts))]
