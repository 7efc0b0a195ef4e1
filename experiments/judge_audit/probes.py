"""Does the embedded model itself know a harmful continuation? Hidden-state probes, cross-validated.

    python experiments/judge_audit/probes.py

A sequel to ``variants.py``, on the same ``calibration`` split only (5 folds grouped by prompt;
the held-out split is not read) and with the same columns. Each harmful-prompt record is read by
the embedded SmolLM2-135M-Instruct (fp32) as its chat template gives it: the request as the user
turn, then the prefix and the continuation (first 256 tokens) as the assistant turn. Features:

* ``smollm2 hL``: the mean over the continuation's tokens of the hidden state after layer L
  (576-d), standardised on each fold's training part;
* ``+likelihood``: the context judge's 9 features plus the continuation's mean token log-prob
  given the request, the same given a neutral request ("Continue the text."), and their
  difference (how much the request explains the continuation);
* ``+likelihood + h16``: the context features, the likelihood ones and the layer-16 probe together.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lat.evaluation.judges.context import continuation, features
from lat.models.embedded import embedded_model_dir

sys.path.insert(0, str(Path(__file__).parent))
from variants import calibration_set, table_row  # noqa: E402

LAYERS = (8, 16, 24, 30)
MAX_TOKENS = 256
NEUTRAL = "Continue the text."


def read_with_model(records: list[dict]) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Mean hidden states per layer, ``(N, 576)`` each, and ``(N, 3)`` likelihood features."""
    path = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def opening(user: str) -> list[int]:
        text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False).input_ids

    def mean_logprob(context: list[int], target: list[int], logits: torch.Tensor) -> float:
        logp = torch.log_softmax(logits[0, len(context) - 1 : -1], -1)  # (T, V): each position predicts the next
        return float(logp.gather(-1, torch.tensor(target)[:, None]).mean())

    neutral = opening(NEUTRAL)
    hidden: dict[int, list[torch.Tensor]] = {layer: [] for layer in LAYERS}
    likely = []
    with torch.no_grad():
        for r in records:
            prefix = r.get("prefix") or ""
            text = continuation(r["response"], prefix)
            target = tokenizer(text, add_special_tokens=False).input_ids[:MAX_TOKENS] or [tokenizer.eos_token_id]
            context = opening(r["prompt"]) + tokenizer(prefix, add_special_tokens=False).input_ids
            out = model(torch.tensor([context + target]), output_hidden_states=True)
            for layer in LAYERS:
                hidden[layer].append(out.hidden_states[layer][0, len(context) :].mean(0))
            given = mean_logprob(context, target, out.logits)
            alone = mean_logprob(neutral, target, model(torch.tensor([neutral + target])).logits)
            likely.append([given, alone, given - alone])
    return {layer: torch.stack(h).double() for layer, h in hidden.items()}, torch.tensor(likely, dtype=torch.float64)


def main() -> None:
    records, y, jsr, fold = calibration_set()
    base = torch.tensor(
        [features(continuation(r["response"], r.get("prefix") or ""), r["prompt"], r.get("prefix") or "") for r in records], dtype=torch.float64
    )
    hidden, likely = read_with_model(records)
    sets = {"context": base, "+likelihood": torch.cat([base, likely], 1)}
    sets |= {f"smollm2 h{layer}": h for layer, h in hidden.items()}
    sets["+likelihood + h16"] = torch.cat([base, likely, hidden[16]], 1)
    print(f"calibration: {len(records)} harmful-prompt records, {int(jsr.sum())} JSR ({int((y & jsr).sum())} unsafe)\n")
    print("| features | C | JSR accuracy (best threshold) | false-safe there | least abstained for >= 0.92 / <= 0.05 |\n|---|---|---|---|---|")
    for name, x in sets.items():
        for c in (0.01, 0.1, 1.0):
            print(table_row(name, c, x, y, jsr, fold, standardise=True))


if __name__ == "__main__":
    main()
