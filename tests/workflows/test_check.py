"""Validation when a config is resolved: names, cross-field rules, before any model loads."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lat.cli import main
from lat.config import load_config
from lat.core.errors import UserError
from lat.workflows.check import check_config, resolve

SMOKE = ["experiment=smoke"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.loss=cee"], r"^train\.loss: unknown loss 'cee'; known: ce, constrained \(did you mean 'ce'\?\)$"),
        (["preview.mode=reel"], r"^preview\.mode: unknown strategy 'reel'; known: vanilla, real, .* \(did you mean 'real'\?\)$"),
        (["data.task=gsm9k"], r"^data\.task: unknown task 'gsm9k'; known: gsm8k, samsum, instruction \(did you mean 'gsm8k'\?\)$"),
        (["train.schedule=cosin"], r"^train\.schedule: unknown schedule 'cosin'.*did you mean 'cosine'"),
        (["train.start_from=sed"], r"^train\.start_from: unknown starting point 'sed'.*did you mean 'seed'"),
        (["eval.judge.name=keywrd"], r"^eval\.judge\.name: unknown judge 'keywrd'.*did you mean 'keyword'"),
        (["eval.extra_judges=[embeding]"], r"^eval\.extra_judges: unknown judge 'embeding'.*did you mean 'embedding'"),
        (["eval.precision=bf16-mixd"], r"^eval\.precision: unknown 'bf16-mixd'.*did you mean 'bf16-mixed'"),
        (["align.dtype=bfloat61"], r"^align\.dtype: unknown 'bfloat61'"),
        (["train.devices=gpu0"], r"^train\.devices: expected auto, a count \(4\) or device indices \(0,1\), got 'gpu0'$"),
        (["train.drift_alarm_kl=0.5", "train.drift_alarm_probe=nope"], r"^train\.drift_alarm_probe: unknown 'nope'; known: harmful"),
        (["methods=[{name: x, overrides: [preview.mode=virtul]}]"], r"^method x: preview\.mode: unknown strategy 'virtul'.*did you mean 'virtual'"),
    ],
)
def test_a_misspelt_name_fails_when_the_config_is_resolved(overrides, message):
    with pytest.raises(UserError, match=message):
        resolve([*SMOKE, *overrides], methods=True)


def test_a_method_is_checked_only_where_methods_run():
    broken = ["methods=[{name: x, overrides: [preview.mode=virtul]}]"]
    resolve([*SMOKE, *broken])  # lat train / eval / align do not run the methods
    with pytest.raises(UserError, match="^method x: "):
        resolve([*SMOKE, *broken], methods=True)


def test_the_drift_alarm_probe_is_checked_only_with_the_alarm_on():
    resolve([*SMOKE, "train.drift_alarm_probe=nope"])


def test_lat_config_exits_2_with_a_suggestion_without_importing_torch(tmp_path):
    code = (
        "import sys\nfrom lat.cli import main\ncode = main(['config', 'experiment=smoke', 'train.loss=cee'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(code)"
    )
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    took = time.perf_counter() - start
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == "lat: train.loss: unknown loss 'cee'; known: ce, constrained (did you mean 'ce'?)"
    assert took < 30  # a generous bound for a loaded 2-core machine; the point is no model load (no torch)


def test_lat_train_with_a_misspelt_name_leaves_no_run_folder(tmp_path, capsys):
    code = main(["train", *SMOKE, f"run.root={tmp_path / 'runs'}", "train.loss=cee"])  # in-process: the CLI's own exit code and stderr
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'ce'" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_workflows_check_a_config_given_in_python_too(tmp_path):
    from lat.workflows.train import train

    cfg = load_config([*SMOKE, f"run.root={tmp_path}", "train.loss=cee"])
    with pytest.raises(UserError, match="did you mean 'ce'"):
        train(cfg)
    assert list(tmp_path.iterdir()) == []


def test_every_shipped_experiment_passes_the_check():
    from lat.config import available

    for name in available("experiment"):
        check_config(load_config([f"experiment={name}"]))


def test_lat_config_list_shows_the_shipped_configs(capsys):
    assert main(["config", "--list"]) == 0
    out = capsys.readouterr().out
    assert "experiment: defenses, full, paper_small, quickstart, smoke" in out and "sweep:" in out and "lat/configs" in out


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.packing=true", "model.attn_implementation=flash_attention_2"], r"^data\.packing: model\.attn_implementation=flash_attention_2 attends"),
        (["train.drift_alarm_kl=0.5", "data.probes=[]"], r"^train\.drift_alarm_kl: needs a probe set"),
    ],
)
def test_cross_field_rules_fail_when_the_config_is_resolved(overrides, message):
    with pytest.raises(UserError, match=message):
        resolve([*SMOKE, *overrides])
    check_config(load_config([*SMOKE, *overrides[:1]]))  # each setting alone is fine
