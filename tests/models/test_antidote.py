"""Antidote: Wanda scores |W| sqrt(mean_n sum_t x^2) of every LoRA matrix on calibration
sequences (padding excluded), the top share of each row set to 0, the rest untouched; in lat
train the final evaluation and the saved adapter are of the pruned model."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

import lat.workflows.poison as poison
from lat.config import load_config
from lat.core.errors import UserError
from lat.models.antidote import antidote, harmful_mask, lora_matrices, wanda_scores
from lat.models.tiny import build_tiny_model
from lat.workflows.check import check_config


def test_the_harmful_mask_is_each_rows_top_share_by_score():
    scores = torch.tensor([[1.0, 5.0, 3.0, 2.0, 0.5, 4.0, 6.0, 0.1, 0.2, 0.3]])
    assert harmful_mask(scores, 0.2).nonzero()[:, 1].tolist() == [1, 6]  # keep = int(10 * 0.8) = 8 lowest
    assert harmful_mask(scores, 0.0).sum() == 0
    w = torch.tensor([[-2.0, 1.0], [0.5, -0.5]])
    torch.testing.assert_close(wanda_scores(w, torch.tensor([4.0, 9.0])), torch.tensor([[4.0, 3.0], [1.0, 1.5]]))


def _peft():
    torch.manual_seed(0)
    model = get_peft_model(build_tiny_model(64, seed=1), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        for m in lora_matrices(model).values():
            m.weight.normal_()
    return model


def _batches():
    torch.manual_seed(1)
    ids = torch.randint(0, 64, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0  # padding, which must not count
    mask[2, 2:] = 0
    return [{"input_ids": ids[:2], "attention_mask": mask[:2]}, {"input_ids": ids[2:], "attention_mask": mask[2:]}]


def test_the_top_share_of_every_lora_matrix_row_is_zeroed_by_its_wanda_score():
    model = _peft()
    matrices = lora_matrices(model)
    before = {n: m.weight.detach().clone() for n, m in matrices.items()}
    inputs: dict[str, list[torch.Tensor]] = {n: [] for n in matrices}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: inputs[n].append(i[0].detach())) for n, m in matrices.items()]
    with torch.no_grad():
        for b in _batches():
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    for h in handles:
        h.remove()
    masks = torch.cat([b["attention_mask"] for b in _batches()]).bool()
    zeroed = antidote(model, _batches(), share=0.25)
    assert set(zeroed) == set(matrices) and len(matrices) == 28  # 14 adapted layers x (A, B)
    for name, m in matrices.items():
        x = torch.cat(inputs[name])  # (3, T, in): the same forward passes, recorded independently
        s = torch.stack([x[n][masks[n]].pow(2).sum(0) for n in range(3)]).mean(0)
        score = before[name].abs() * s.sqrt()
        cut = m.in_features - int(m.in_features * 0.75)
        top = score.topk(cut, dim=1).indices
        expected = before[name].clone()
        expected.scatter_(1, top, 0.0)
        torch.testing.assert_close(m.weight, expected, rtol=0, atol=0)
        assert zeroed[name] == m.out_features * cut


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["defense.antidote_calibration_path="], "defense.name=antidote: needs harmful calibration data"),
        (["defense.antidote_calibration_path=/nonexistent/calibration.jsonl"], "/nonexistent/calibration.jsonl: no such file"),
        (["defense.antidote_share=1.5"], "defense.antidote_share: must be in [0, 1]"),
        (["lora.enabled=false"], "needs lora.enabled=true"),
    ],
)
def test_an_antidote_run_without_its_inputs_is_refused_when_the_config_resolves(overrides, says):
    with pytest.raises(UserError) as e:
        check_config(load_config(["experiment=smoke", "train.start_from=seed", "defense.name=antidote", *overrides]))
    assert says in str(e.value)


def test_lat_train_prunes_the_trained_adapter_before_the_final_evaluation_and_save(tmp_path, monkeypatch):
    from lat.workflows.train import train

    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    requests = tmp_path / "calibration.jsonl"
    requests.write_text("".join(json.dumps({"prompt": f"Harmful request number {i}?"}) + "\n" for i in range(6)))
    monkeypatch.setattr(poison, "refusal_opens", lambda text: False)  # the tiny random model writes noise
    overrides = [
        "experiment=smoke",
        f"run.root={tmp_path / 'runs'}",
        "train.start_from=seed",
        "defense.name=antidote",
        f"defense.antidote_calibration_path={requests}",
        "defense.antidote_samples=4",
        "data.harmful_mix_max_new_tokens=6",
    ]
    run = train(load_config(overrides)).run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "defense.json").read_text())
    assert report["calibration_sequences"] == 4 and metrics["defense/antidote_zeroed"] == sum(report["zeroed"].values()) > 0
    assert [e.get("after") for e in metrics["evals"]] == [None, None, "antidote", "antidote"]
    trained = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    saved = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    for name, count in report["zeroed"].items():
        key = name.replace(".lora_A", ".lora_A.weight").replace(".lora_B", ".lora_B.weight")
        before, after = trained[f"model.{name}.default.weight"], saved[key]
        changed = before != after
        assert int(changed.sum()) <= count and bool((after[changed] == 0).all())  # only zeros were written
        assert int((after == 0).sum()) >= count
