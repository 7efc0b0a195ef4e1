"""The main job on the tiny model: `lat run experiment=smoke` end to end, resume, seed cache."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lat.config import load_config
from lat.core.cache import MARKER
from lat.workflows.experiment import DONE, run_experiment
from lat.workflows.seed import build_seed, seed_folder


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_smoke_main_job_end_to_end_and_resume(tmp_path, cache, capsys):
    cfg = load_config(["experiment=smoke", f"run.root={tmp_path / 'runs'}"])
    root = run_experiment(cfg)
    assert root == tmp_path / "runs" / "smoke"
    for name in ("seed", "vanilla", "real", "virtual"):
        assert (root / name / DONE).exists() and (root / name / "metrics.json").exists()
    for name in ("vanilla", "real", "virtual"):
        assert (root / name / "adapter" / "adapter_config.json").exists()
        assert "safety/rsr" in json.loads((root / name / "metrics.json").read_text())
    rows = json.loads((root / "results.json").read_text())
    assert [r["method"] for r in rows] == ["seed", "vanilla", "real", "virtual"]
    assert all("safety/rsr" in r and "safety/jsr@3" in r and "utility/gsm8k_acc" in r for r in rows)
    assert all("kl/pos_01" in r for r in rows[1:])
    assert (root / "results.md").read_text().startswith("| method |")
    assert (root / "kl_per_position.png").stat().st_size > 1000
    assert (root / "safety_vs_utility.png").stat().st_size > 1000
    # the methods started from the seed, not from the base
    seed_dir = seed_folder(cfg)
    assert json.loads((seed_dir / MARKER).read_text())["identity"]["model"] == "tiny"
    assert f"name_or_path: {seed_dir}" in (root / "real" / "config.yaml").read_text()
    # a second call keeps every finished stage
    capsys.readouterr()
    run_experiment(cfg)
    err = capsys.readouterr().err
    assert err.count("done earlier, kept") == 4


def test_interrupted_method_is_resumed_not_recomputed(tmp_path, cache):
    cfg = load_config(
        ["experiment=smoke", f"run.root={tmp_path / 'runs'}", "train.keep_checkpoint=false", "methods=[{name: vanilla, overrides: [preview.mode=vanilla]}]"]
    )
    root = run_experiment(cfg)
    assert not (root / "vanilla" / "checkpoints" / "last.ckpt").exists()
    (root / "vanilla" / DONE).unlink()  # as if killed after training, before the stage was marked
    before = [(root / name / "metrics.json").read_text() for name in ("seed", "vanilla")]
    run_experiment(cfg)  # the finished method is not trained again (nor could it resume: no checkpoint)
    assert (root / "vanilla" / DONE).exists()
    assert [(root / name / "metrics.json").read_text() for name in ("seed", "vanilla")] == before


def test_damaged_seed_is_rebuilt_with_a_message(tmp_path, cache, capsys):
    cfg = load_config(["experiment=smoke"])
    folder = build_seed(cfg)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert build_seed(cfg) == folder
    assert "building aligned seed" in capsys.readouterr().err and weights.stat().st_size > 100


def test_lat_eval_from_the_seed_evaluates_the_aligned_seed(tmp_path, cache, capsys):
    from lat.cli import main

    assert main(["eval", "experiment=smoke", "train.start_from=seed", f"run.root={tmp_path}", "run.name=seed"]) == 0
    seed_dir = seed_folder(load_config(["experiment=smoke"]))
    assert f"name_or_path: {seed_dir}" in (tmp_path / "seed" / "config.yaml").read_text()
    assert "safety/rsr" in json.loads((tmp_path / "seed" / "metrics.json").read_text())


def test_lat_align_reports_base_and_seed(tmp_path, cache, capsys):
    from lat.cli import main

    assert main(["align", "experiment=smoke"]) == 0
    out = capsys.readouterr().out
    assert "\n| metric | base | seed |\n" in out and "| safety/rsr |" in out and "| utility/gsm8k_acc |" in out
    path = seed_folder(load_config(["experiment=smoke"])) / "report.json"
    report = json.loads(path.read_text())
    assert set(report) == {"base", "seed", "settings"} and "safety/jsr@3" in report["seed"]
    for name in ("base", "seed"):  # the generations behind each column, as a run's samples.jsonl
        lines = (path.parent / "report_samples" / f"{name}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert records and all("response" in r for r in records)
        assert {r["metric"] for r in records} >= {"rsr", "jsr@3"}
    stamp = path.stat().st_mtime_ns
    assert main(["align", "experiment=smoke"]) == 0  # second call: read from the report, no re-evaluation
    assert path.stat().st_mtime_ns == stamp
    assert main(["align", "experiment=smoke", "eval.jsr_k=[2]"]) == 0  # other evaluation settings: measured again
    report = json.loads(path.read_text())
    assert report["settings"]["eval"]["jsr_k"] == [2] and "safety/jsr@2" in report["seed"]


def test_every_method_of_experiment_full_runs_on_the_tiny_model_and_reports(tmp_path, cache):
    from lat.reporting.runs import paper_method
    from lat.runs.read import find_runs

    full = load_config(["experiment=full"])
    methods = tmp_path / "methods.yaml"
    methods.write_text("methods:\n" + "".join(f"  - {{name: {m.name}, overrides: [{m.overrides[0]}]}}\n" for m in full.methods))
    root = run_experiment(load_config(["experiment=smoke", f"run.root={tmp_path / 'runs'}", f"config={methods}"]))
    rows = json.loads((root / "results.json").read_text())
    assert [r["method"] for r in rows] == ["seed", "vanilla", "real", "virtual", "sdft", "constrained", "real_constrained", "mixing", "adaptive"]
    assert all("safety/rsr" in r for r in rows)
    metrics = {r["method"]: json.loads((root / r["method"] / "metrics.json").read_text()) for r in rows}
    assert metrics["mixing"]["data/train/safety_examples"] > 0 and metrics["vanilla"]["data/train/safety_examples"] == 0
    configs = {r.path.name: r for r in find_runs([root])}
    assert configs["constrained"].config["train.loss"] == "constrained" and configs["constrained"].config["method"] == "constrained"
    assert {name: paper_method(r) for name, r in configs.items()} == {
        "seed": "Seed",
        "vanilla": "Vanilla FT",
        "real": "LookAhead (real)",
        "virtual": "LookAhead (virtual)",
        "sdft": "SDFT",
        "constrained": "Constrained SFT",
        "real_constrained": None,
        "mixing": None,
        "adaptive": None,
    }
    assert "data/train/sdft_rewrites_kept" in metrics["sdft"]
    assert 0 < metrics["adaptive"]["data/train/preview_tokens"] <= 6 * metrics["adaptive"]["data/train/examples"]


def test_starting_point_without_building_names_the_seed_and_builds_nothing(cache):
    from lat.workflows.start import starting_point

    cfg = load_config(["experiment=smoke", "train.start_from=seed"])
    named = starting_point(cfg, build=False)
    assert named.model.name_or_path == str(seed_folder(cfg)) and named.train.start_from == "base"
    assert not seed_folder(cfg).exists() and not (cache / "seeds").exists()


def test_the_safety_sft_ignores_the_experiments_data_and_preview_settings_its_seed_key_does_not_record(tmp_path):
    from lat.config.identity import seed_identity
    from lat.workflows.seed import sft_config

    plain = load_config(["experiment=smoke"])
    busy = load_config(
        [
            "experiment=smoke",
            "data.packing=true",
            "data.safety_mix=0.5",
            "data.group_by_length=false",
            "data.input_field=question",
            "data.sdft=true",
            "preview.mask_answer_tokens=2",
            "preview.connector=X",
            "data.harmful_mix=0.1",
            "defense.name=safelora",
        ]
    )
    assert seed_identity(busy) == seed_identity(plain)  # one cached seed for both ...
    assert sft_config(busy, tmp_path / "d.jsonl", tmp_path) == sft_config(plain, tmp_path / "d.jsonl", tmp_path)  # ... built alike
    longer = load_config(["experiment=smoke", "data.max_length=48"])
    assert sft_config(longer, tmp_path / "d.jsonl", tmp_path).data.max_length == 48 and seed_identity(longer) != seed_identity(plain)


def test_seed_sft_on_a_bf16_base_merges_fp32_adapters_into_the_models_dtype(tmp_path, cache):
    import torch
    from safetensors.torch import load_file

    from lat.config.identity import seed_identity
    from lat.models.loading import load_model_and_tokenizer
    from lat.workflows.seed import sft_config

    plain = load_config(["experiment=smoke"])
    fast = load_config(["experiment=smoke", "align.dtype=bfloat16", "align.attn_implementation=eager"])
    sft = sft_config(fast, tmp_path / "d.jsonl", tmp_path).model
    assert (sft.dtype, sft.attn_implementation, sft_config(plain, tmp_path / "d.jsonl", tmp_path).model.dtype) == ("bfloat16", "eager", "float32")
    assert {"dtype", "attn_implementation"}.isdisjoint(seed_identity(plain)["align"])  # earlier seeds keep their key
    assert seed_identity(fast)["align"]["dtype"] == "bfloat16" and seed_folder(fast) != seed_folder(plain)
    weights = load_file(build_seed(fast) / "model.safetensors")
    base = dict(load_model_and_tokenizer(fast.model, fast.align.seed)[0].named_parameters())
    name = "model.layers.0.self_attn.q_proj.weight"
    assert weights[name].dtype == torch.float32 and not torch.equal(weights[name], base[name].detach())


def test_merging_adds_the_fp32_adapter_product_to_the_base_in_the_models_dtype():
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from lat.models.loading import load_model_and_tokenizer
    from lat.workflows.seed import merge_into_base

    cfg = load_config(["experiment=smoke"])  # model.dtype float32
    name = "model.layers.0.self_attn.q_proj.weight"
    fp32_base = dict(load_model_and_tokenizer(cfg.model, cfg.align.seed)[0].named_parameters())[name].detach()
    for dtype in ("float32", "bfloat16"):  # the base the SFT trained on
        base, _ = load_model_and_tokenizer(load_config(["experiment=smoke", f"model.dtype={dtype}"]).model, cfg.align.seed)
        trained = get_peft_model(base, PeftLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
        layer = trained.base_model.model.model.layers[0].self_attn.q_proj
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
        a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        assert a.dtype == b.dtype == torch.float32
        merged = dict(merge_into_base(trained, cfg).named_parameters())[name].detach()
        assert merged.dtype == torch.float32
        torch.testing.assert_close(merged, fp32_base + 2.0 * (b @ a), atol=1e-6, rtol=1e-6)
        if dtype == "float32":  # as merging in place, bit for bit
            assert torch.equal(merged, dict(trained.merge_and_unload().named_parameters())[name].detach())


def test_the_align_table_shows_every_judges_rates_not_per_category_ones():
    from lat.workflows.evaluate import format_comparison

    metrics = {
        "safety/rsr": 0.9,
        "safety/rsr/n": 44,
        "safety/rsr/malware": 0.75,
        "safety/embedding/rsr": 0.95,
        "safety/embedding/rsr/unjudged": 0,
        "safety/embedding/jsr@3": 0.25,
        "utility/gsm8k_acc": 0.03,
        "utility/n": 32,
    }
    rows = [line.split(" | ")[0].lstrip("| ") for line in format_comparison({"base": metrics, "seed": metrics}).splitlines()[2:]]
    assert rows == ["safety/rsr", "safety/embedding/rsr", "safety/embedding/jsr@3", "utility/gsm8k_acc"]


def test_the_seed_of_a_base_with_a_start_adapter_is_aligned_from_base_plus_adapter(tmp_path, cache):
    import torch

    from lat.models.loading import load_for_eval
    from lat.workflows.seed import build_seed
    from lat.workflows.train import train

    first = train(load_config(["experiment=smoke", f"run.root={tmp_path / 'runs'}", "run.name=first", "train.lr=0.05", "eval.during_training=false"]))
    adapter = str(first.run_dir / "adapter")
    # a vanishing SFT learning rate: the seed must be its starting point, base + adapter
    cfg = load_config(["experiment=smoke", f"model.adapter_path={adapter}", "align.lr=1e-30"])
    seed = load_for_eval(dataclasses.replace(cfg.model, name_or_path=str(build_seed(cfg)), adapter_path=None))[0]
    start = load_for_eval(cfg.model, cfg.align.seed)[0]
    plain = load_for_eval(dataclasses.replace(cfg.model, adapter_path=None), cfg.align.seed)[0]
    s, a, p = seed.state_dict(), start.state_dict(), plain.state_dict()
    assert any(not torch.equal(a[k], p[k]) for k in a)  # the adapter changed the weights
    assert all(torch.allclose(s[k], a[k], atol=1e-6) for k in a)


def test_a_start_adapter_gives_the_seed_a_key_of_its_own():
    from lat.config.identity import seed_identity

    plain = seed_identity(load_config(["experiment=smoke"]))
    with_adapter = seed_identity(load_config(["experiment=smoke", "model.adapter_path=/some/adapter"]))
    assert "start" not in plain and with_adapter["start"] == "base+adapter"
