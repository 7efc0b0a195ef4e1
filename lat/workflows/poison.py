"""Poisoned fine-tuning (``data.harmful_mix``): the pool of harmful request -> compliant answer
pairs that the datamodule mixes into the task data.

The threat model of the harmful-fine-tuning literature (Vaccine, Lisa, Booster, Antidote): a share
of the user's fine-tuning data asks for harm and shows compliance. The compliant answers here are
the unaligned base model's own greedy answers to the shipped harmful training requests, generated
once per base model and cached (as the seed's benign answers are); requests the base refuses or
leaves unanswered are left out, since they would teach refusal, not compliance.
"""

from __future__ import annotations

from pathlib import Path

from lat.config import Config
from lat.config.identity import harmful_mix_answers_key
from lat.core.cache import cache_file, cached_json, in_seed_cache
from lat.core.errors import UserError
from lat.core.paths import resolve_path
from lat.core.precision import autocast_dtype
from lat.core.ranks import is_primary, wait_for
from lat.core.refusals import refusal_opens
from lat.data.records import RecordSet, read_records
from lat.data.tasks import Example
from lat.evaluation.generate import GenerationSettings, answer
from lat.models.loading import load_for_eval


def compliant(text: str) -> bool:
    """An answer that carries out the request: not empty, and no refusal opens it."""
    return bool(text.strip()) and not refusal_opens(text)


def harmful_pool(cfg: Config) -> RecordSet | None:
    """The (``prompt``, ``answer``) pairs poisoned fine-tuning draws from; None when
    ``data.harmful_mix`` is 0 (:func:`compliant_pairs` of ``data.harmful_mix_path``)."""
    return compliant_pairs(cfg, cfg.data.harmful_mix_path, "data.harmful_mix") if cfg.data.harmful_mix else None


def compliant_pairs(cfg: Config, path: str, setting: str) -> RecordSet:
    """Harmful requests of ``path`` with the unaligned base's own compliant greedy answers
    (``data.harmful_mix_max_new_tokens`` tokens, cached), those it refuses or leaves empty left out.

    Args:
        cfg: A config with ``model`` still the unaligned base (before
            :func:`lat.workflows.start.starting_point` puts the seed in its place).
        path: The requests (field ``prompt``).
        setting: The setting that asked, for messages.

    Raises:
        UserError: ``model`` is already an aligned seed, the requests file is unreadable, or the
            base refused every request.
    """
    if in_seed_cache(cfg.model.name_or_path):
        raise UserError(f"{setting}: model.name_or_path={cfg.model.name_or_path} is an aligned seed; the compliant answers come from the unaligned base")
    requests = read_records(path)
    prompts = requests.texts("prompt")
    cast = autocast_dtype(cfg.train.precision, cfg.train.accelerator)
    settings = GenerationSettings(max_new_tokens=cfg.data.harmful_mix_max_new_tokens, batch_size=cfg.eval.batch_size, progress=True, autocast=cast)

    def generate() -> list[str]:
        model, tok = load_for_eval(cfg.model, cfg.align.seed)  # the base the seed is built from
        return answer(model, tok, [Example(p, "") for p in prompts], settings)

    key = harmful_mix_answers_key(cfg, prompts, cast)
    if not is_primary():  # rank 0 generates them: answers that differed by a token would give ranks different data
        wait_for(cache_file("harmful_mix_answers", key).exists, "the base model's answers", Path(str(resolve_path(path))))
    answers = cached_json("harmful_mix_answers", key, generate)
    keep = [i for i, text in enumerate(answers) if compliant(text)]
    if not keep:
        raise UserError(f"{requests.source}: the base model refused or left unanswered every request; {setting} has nothing to use")
    pairs = [{"prompt": prompts[i], "answer": answers[i].strip()} for i in keep]
    return RecordSet(requests.source, pairs, [requests.locations[i] for i in keep])
