"""Safe LoRA: C = V V^T / ||V||_F, the layers of lowest cos(C BA, BA) get B <- C B, the rest stay
as trained, the result still loads as a peft adapter; in lat train the final evaluation and the
saved adapter are of the projected model."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from lat.config import load_config
from lat.core.errors import UserError
from lat.models.safelora import alignment_matrix, base_weight_name, choose, lora_layers, projection_cosine, safe_lora
from lat.models.tiny import build_tiny_model
from lat.workflows.check import check_config


def test_the_alignment_matrix_and_the_cosine_by_hand():
    torch.manual_seed(0)
    aligned, unaligned = torch.randn(6, 4), torch.randn(6, 4)
    v = aligned - unaligned
    c = alignment_matrix(aligned, unaligned)
    torch.testing.assert_close(c, v @ v.T / v.pow(2).sum().sqrt())
    b, a = torch.randn(6, 2), torch.randn(2, 4)
    cw, w = (c @ b @ a).flatten(), (b @ a).flatten()
    assert projection_cosine(c, b, a) == pytest.approx(float(cw @ w / (cw.norm() * w.norm())), rel=1e-5)


def test_the_layers_chosen_are_the_lowest_cosines_or_those_under_a_threshold():
    cosines = {"a": 0.9, "b": 0.1, "c": None, "d": 0.5, "e": 0.3}
    assert choose(cosines, 2, None) == {"b", "e"}
    assert choose(cosines, 10, None) == {"a", "b", "d", "e"}  # a layer without an aligned direction never
    assert choose(cosines, 2, 0.5) == {"b", "d", "e"}


def _lora(seed: int = 0):
    torch.manual_seed(seed)
    base = build_tiny_model(64, seed=1)
    aligned = build_tiny_model(64, seed=1)
    with torch.no_grad():
        for p in aligned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = get_peft_model(aligned, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].weight.normal_()  # a trained adapter: B != 0
    return model, base.state_dict()


def test_projected_layers_satisfy_the_projection_and_the_others_are_untouched(tmp_path):
    model, unaligned = _lora()
    layers = lora_layers(model)
    before = {n: (m.lora_A["default"].weight.clone(), m.lora_B["default"].weight.clone()) for n, m in layers.items()}
    reports = safe_lora(model, unaligned, layers=3)
    assert [r.name for r in reports] == list(layers) and len(layers) == 14  # 2 decoder layers x 7 linears
    projected = {r.name for r in reports if r.projected}
    assert len(projected) == 3
    assert max(r.cosine for r in reports if r.projected) <= min(r.cosine for r in reports if not r.projected)
    for name, layer in layers.items():
        a, b = before[name]
        torch.testing.assert_close(layer.lora_A["default"].weight, a, rtol=0, atol=0)
        if name in projected:
            c = alignment_matrix(layer.base_layer.weight, unaligned[base_weight_name(name)])
            torch.testing.assert_close(layer.lora_B["default"].weight, c @ b, rtol=1e-6, atol=1e-6)
        else:
            torch.testing.assert_close(layer.lora_B["default"].weight, b, rtol=0, atol=0)
    model.save_pretrained(str(tmp_path / "adapter"))
    again = PeftModel.from_pretrained(build_tiny_model(64, seed=1), str(tmp_path / "adapter"))
    for name, layer in lora_layers(again).items():
        torch.testing.assert_close(layer.lora_B["default"].weight, layers[name].lora_B["default"].weight)


def test_a_threshold_projects_every_layer_at_or_below_it():
    model, unaligned = _lora()
    cosines = sorted(r.cosine for r in safe_lora(_lora()[0], unaligned, layers=0))
    threshold = cosines[4]
    reports = safe_lora(model, unaligned, threshold=threshold)
    assert sum(r.projected for r in reports) == 5
    assert all(r.projected == (r.cosine <= threshold) for r in reports)


def test_a_layer_alignment_left_unchanged_is_never_projected():
    model, unaligned = _lora()
    name = next(iter(lora_layers(model)))
    unaligned[base_weight_name(name)] = lora_layers(model)[name].base_layer.weight.detach().clone()
    (first, *_) = safe_lora(model, unaligned, layers=14)
    assert first.name == name and first.cosine is None and not first.projected


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["defense.name=safelora", "lora.enabled=false"], "defense.name=safelora: changes LoRA's adapter weights; needs lora.enabled=true"),
        (["defense.name=safelora", "align.enabled=false"], "needs train.start_from=seed and align.enabled=true"),
        (["defense.name=safelora", "train.start_from=base"], "needs train.start_from=seed and align.enabled=true"),
        (["defense.name=safe_lora"], "(did you mean 'safelora'?)"),
    ],
)
def test_a_safelora_run_without_its_inputs_is_refused_when_the_config_resolves(overrides, says):
    with pytest.raises(UserError) as e:
        check_config(load_config(["experiment=smoke", *overrides]))
    assert says in str(e.value)


def test_lat_train_projects_the_trained_adapter_before_the_final_evaluation_and_save(tmp_path, monkeypatch):
    from lat.models.tiny import build_tiny_tokenizer
    from lat.workflows.train import train

    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    overrides = [
        "experiment=smoke",
        f"run.root={tmp_path / 'runs'}",
        "train.start_from=seed",
        "defense.name=safelora",
        "defense.safelora_layers=2",
        "train.lr=1e-2",
    ]
    cfg = load_config(overrides)
    result = train(cfg)
    run = result.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["defense/safelora_projected"] == 2 and metrics["defense/safelora_layers"] == 14
    report = json.loads((run / "defense.json").read_text())
    projected = {r["name"] for r in report["layers"] if r["projected"]}
    assert len(projected) == 2 and report["settings"]["safelora_layers"] == 2
    after = [e for e in metrics["evals"] if e.get("after") == "safelora"]
    assert len(after) == 2 and "safety/rsr" in after[0] and "utility/gsm8k_acc" in after[1]  # both evaluations again, after the projection
    # The checkpoint holds the adapter as trained; the saved adapter is it with C B in the projected layers.
    trained = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    saved = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    (folder,) = [p for p in (tmp_path / "cache" / "seeds").iterdir() if p.is_dir() and not p.name.endswith(".lock")]
    seed = load_file(str(folder / "model.safetensors"))
    base = build_tiny_model(len(build_tiny_tokenizer()), seed=cfg.align.seed).state_dict()
    for name in {r["name"] for r in report["layers"]}:
        plain = base_weight_name(name)
        b_trained = trained[f"model.{name}.lora_B.default.weight"]
        b_saved = saved[f"{name}.lora_B.weight"]
        if name in projected:
            torch.testing.assert_close(b_saved, alignment_matrix(seed[plain], base[plain]) @ b_trained, rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(b_saved, b_trained)
