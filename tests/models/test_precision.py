"""Precision: ``auto`` resolution, unknown names, and generation under autocast."""

from __future__ import annotations

import pytest
import torch

from lat.config import ModelConfig
from lat.core import precision
from lat.core.errors import UserError
from lat.data.tasks import Example
from lat.evaluation.generate import GenerationSettings, generate, prompt_ids
from lat.models.loading import load_model_and_tokenizer


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator="auto": native)
    assert precision.resolve_precision("auto") == expected
    assert precision.autocast_dtype("auto") == ("bfloat16" if native else None)


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_weight_dtype_follows_native_bf16_and_none_is_the_default(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator="auto": native)
    assert precision.resolve_weight_dtype("auto", "float32") == expected
    assert precision.resolve_weight_dtype(None, "float32") == "float32"
    assert precision.resolve_weight_dtype("float16", "float32") == "float16"
    with pytest.raises(UserError, match="align.dtype: unknown 'fp8'"):
        precision.resolve_weight_dtype("fp8", "float32")


def test_named_precisions_pass_through_and_unknown_is_a_user_error():
    assert precision.resolve_precision("16-mixed") == "16-mixed"
    assert precision.autocast_dtype("bf16-true") is None
    with pytest.raises(UserError, match="train.precision: unknown 'bf17'"):
        precision.resolve_precision("bf17")


def _lm_head_dtypes(model, tok, autocast):
    seen = []
    hook = model.lm_head.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    try:
        prompts = [prompt_ids(tok, Example("What is 2 + 2?", "", None))]
        gens = generate(model, tok, prompts, GenerationSettings(max_new_tokens=3, autocast=autocast))
    finally:
        hook.remove()
    return gens, set(seen)


def test_generation_runs_under_the_requested_autocast():
    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path="tiny"), seed=1)
    model.eval()
    _, plain = _lm_head_dtypes(model, tok, None)
    gens, cast = _lm_head_dtypes(model, tok, "bfloat16")
    assert plain == {torch.float32} and cast == {torch.bfloat16}
    assert gens[0].token_ids and next(model.parameters()).dtype == torch.float32  # weights untouched


def test_seed_identity_records_the_resolved_precisions(monkeypatch):
    from lat.config import apply_overrides, load_config
    from lat.config.identity import seed_identity
    from lat.workflows.seed import seed_folder

    cfg = load_config(["experiment=smoke"])
    assert not {"precision", "answer_precision"} & set(seed_identity(cfg)["align"])  # fp32 seeds keep their earlier key
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator="auto": True)
    auto = apply_overrides(cfg, ["align.precision=auto"])
    assert seed_identity(auto)["align"]["precision"] == "bf16-mixed"
    answers = apply_overrides(cfg, ["align.answer_precision=auto"])
    assert seed_identity(answers)["align"]["answer_precision"] == "bf16-mixed"
    assert len({seed_folder(c) for c in (cfg, auto, answers)}) == 3
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator="auto": False)
    assert seed_identity(answers)["align"]["answer_precision"] == "32-true"  # resolved where it runs
    with pytest.raises(UserError, match="align.answer_precision: unknown 'fp8'"):
        seed_identity(apply_overrides(cfg, ["align.answer_precision=fp8"]))


def test_evaluation_generation_precision_defaults_to_training_and_can_be_set(monkeypatch):
    from lat.config import load_config
    from lat.workflows.common import build_evaluator

    monkeypatch.setattr(precision, "native_bf16", lambda accelerator="auto": True)
    base = ["experiment=smoke", "eval.safety=false", "eval.utility=false"]
    assert build_evaluator(load_config(base)).autocast is None  # train.precision 32-true
    assert build_evaluator(load_config([*base, "train.precision=bf16-mixed"])).autocast == "bfloat16"
    assert build_evaluator(load_config([*base, "eval.precision=auto"])).autocast == "bfloat16"
    assert build_evaluator(load_config([*base, "train.precision=bf16-mixed", "eval.precision=32-true"])).autocast is None
    with pytest.raises(UserError, match="eval.precision: unknown 'half'"):
        build_evaluator(load_config([*base, "eval.precision=half"]))
