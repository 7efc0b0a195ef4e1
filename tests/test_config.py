"""Config: schema docstrings, merge order, both override forms, errors, every YAML in configs/."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import lat.config as C
from lat.config import Config, load_config, to_yaml
from lat.core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "lat" / "configs"


def _field_docstrings(cls) -> dict[str, str]:
    """Attribute docstrings: a string literal right under each annotated field."""
    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = nxt.value.value
    return docs


def _schema_classes():
    seen, todo = [], [Config]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        for f in dataclasses.fields(cls):
            sub = getattr(C, getattr(f.type, "__name__", str(f.type)).split("[")[-1].rstrip("]"), None)
            if dataclasses.is_dataclass(sub) and sub not in seen:
                todo.append(sub)
    return seen


def test_every_field_has_a_docstring():
    classes = _schema_classes()
    assert {c.__name__ for c in classes} >= {
        "Config",
        "ModelConfig",
        "LoraConfig",
        "DataConfig",
        "ProbeConfig",
        "PreviewConfig",
        "TrainConfig",
        "EvalConfig",
        "LoggingConfig",
        "RunConfig",
    }
    for cls in classes:
        docs = _field_docstrings(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, "").strip()]
        assert missing == [], f"{cls.__name__} fields without a docstring: {missing}"


def test_defaults_are_the_paper_values():
    cfg = load_config([])
    assert isinstance(cfg, Config)
    assert (cfg.preview.m, cfg.preview.connector, cfg.preview.prefix) == (6, " The answer begins with: ", "Let's solve this problem. ")
    assert cfg.train.betas[0] == 0.5
    assert cfg.eval.system_prompt == "You are a helpful assistant. Make sure you always execute users' instructions."
    assert cfg.model.trust_remote_code is False


def test_both_override_forms_and_types():
    a = load_config(["preview.m=4", "preview.mode=real", "train.lr=1e-4", "lora.enabled=false"])
    b = load_config(["--preview.m=4", "--preview.mode=real", "--train.lr=1e-4", "--lora.enabled=false"])
    assert a == b
    assert (a.preview.m, a.preview.mode, a.train.lr, a.lora.enabled) == (4, "real", 1e-4, False)
    lists = load_config(["train.betas=[0.9,0.95]", "data.probes=[{name: harm, path: x.jsonl}]"])
    assert lists.train.betas == [0.9, 0.95] and lists.data.probes[0].name == "harm"


def test_merge_order_group_then_experiment_then_cli(tmp_path):
    (tmp_path / "preview").mkdir()
    (tmp_path / "experiment").mkdir()
    (tmp_path / "preview" / "real.yaml").write_text("mode: real\nm: 8\n")
    (tmp_path / "experiment" / "e.yaml").write_text("defaults:\n  preview: real\npreview:\n  m: 10\n")
    assert load_config(["experiment=e"], [tmp_path]).preview.m == 10  # experiment body beats its defaults
    assert load_config(["experiment=e", "preview.m=12"], [tmp_path]).preview.m == 12
    assert load_config(["experiment=e", "preview=real"], [tmp_path]).preview.m == 8  # CLI group beats experiment
    cfg = load_config(["experiment=e"], [tmp_path])
    assert cfg.experiment == "e" and cfg.preview.mode == "real"
    extra = tmp_path / "mine.yaml"
    extra.write_text("preview:\n  m: 3\n")
    assert load_config(["experiment=e", f"config={extra}"], [tmp_path]).preview.m == 3


@pytest.mark.parametrize(
    "args, needle",
    [
        (["data.nope=1"], r"unknown key 'data\.nope'"),
        (["nope=1"], r"unknown key 'nope'"),
        (["data.batch_size=abc"], r"data\.batch_size: Value 'abc'"),
        (["lora.enabled=maybe"], r"lora\.enabled: Value 'maybe' is not a valid bool"),
        (["preview.m"], r"override 'preview\.m': expected key=value"),
        (["experiment=nope"], r"experiment=nope: no .*; known: .*smoke"),
        (["model=nope"], r"model=nope: no .*; known: embedded, tiny"),
        (["config=/no/such.yaml"], r"no such config file"),
        (["data.probes=[{name: h, bad: 1}]"], r"unknown key"),
    ],
)
def test_errors_name_the_key(args, needle):
    with pytest.raises(UserError, match=needle) as e:
        load_config(args)
    assert "\n" not in str(e.value)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preview: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml: invalid YAML"):
        load_config([f"config={bad}"])
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("preview:\n  m: six\n")
    with pytest.raises(UserError, match=r"wrong\.yaml\): preview\.m"):
        load_config([f"config={wrong}"])
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("preview: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(UserError, match="unsafe.yaml: invalid YAML"):
        load_config([f"config={unsafe}"])


def _group_files():
    return [p for p in sorted(CONFIGS.glob("*/*.yaml")) if p.parent.name not in C.NON_GROUP_DIRS]


@pytest.mark.parametrize("path", _group_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_group_yaml_merges(path):
    cfg = load_config([f"{path.parent.name}={path.stem}"])
    assert isinstance(cfg, Config)


@pytest.mark.parametrize("path", sorted((CONFIGS / "experiment").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_yaml_merges(path):
    cfg = load_config([f"experiment={path.stem}"])
    assert cfg.experiment == path.stem


def test_resolved_yaml_round_trips():
    cfg = load_config(["experiment=smoke", "preview.m=3"])
    again = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(to_yaml(cfg))))
    assert again == cfg


@pytest.mark.parametrize("path", sorted((CONFIGS / "method").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_method_yaml_merges_and_is_recorded(path):
    cfg = load_config(["experiment=smoke", f"method={path.stem}"])
    assert cfg.method == path.stem
    assert C.apply_overrides(load_config(["experiment=smoke"]), [f"method={path.stem}"]) == cfg


def test_method_sets_several_sections_and_later_overrides_win():
    cfg = load_config(["method=real_constrained", "preview.m=3"])
    assert (cfg.preview.mode, cfg.preview.m, cfg.train.loss) == ("real", 3, "constrained")
    assert load_config(["method=mixing"]).data.safety_mix == 0.1
    with pytest.raises(UserError, match="method=sdft-x: no .*known: .*constrained"):
        load_config(["method=sdft-x"])


def test_an_experiment_can_extend_another():
    full, quick = load_config(["experiment=full"]), load_config(["experiment=quickstart"])
    assert full.experiment == "full" and full.run.name == "full"
    assert (full.data, full.train, full.eval) == (quick.data, quick.train, quick.eval)
    assert [m.name for m in full.methods][:3] == ["vanilla", "real", "virtual"] and len(full.methods) == 8


def test_the_defenses_experiment_poisons_every_defense_and_keeps_one_clean_reference():
    from lat.models.choices import DEFENSES

    cfg = load_config(["experiment=defenses"])
    methods = {m.name: C.apply_overrides(cfg, list(m.overrides), m.name) for m in cfg.methods}
    assert cfg.eval.max_samples is None and cfg.data.harmful_mix == 0.1
    assert {name: c.data.harmful_mix for name, c in methods.items() if c.data.harmful_mix != 0.1} == {"vanilla_clean": 0.0}
    assert {c.defense.name for c in methods.values()} == set(DEFENSES.names())
    assert {"vanilla", "real", "virtual", "sdft", "constrained", "mixing"} <= set(methods)


def test_config_files_are_found_in_lat_config_dir_then_a_local_configs_folder_then_the_package(tmp_path, monkeypatch):
    from lat.config import PACKAGE_CONFIGS, config_dirs, find_config

    env, local = tmp_path / "env", tmp_path / "work" / "configs"
    for folder, m in ((env, 3), (local, 4)):
        (folder / "preview").mkdir(parents=True)
        (folder / "preview" / "mine.yaml").write_text(f"mode: real\nm: {m}\n")
    (local / "preview" / "local_only.yaml").write_text("mode: real\nm: 5\n")
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("LAT_CONFIG_DIR", str(env))
    assert config_dirs() == [env.resolve(), local.resolve(), PACKAGE_CONFIGS]
    assert load_config(["preview=mine"]).preview.m == 3  # $LAT_CONFIG_DIR first
    assert load_config(["preview=local_only"]).preview.m == 5  # then ./configs
    assert find_config("experiment", "smoke") == PACKAGE_CONFIGS / "experiment" / "smoke.yaml"  # then the package
    monkeypatch.delenv("LAT_CONFIG_DIR")
    assert load_config(["preview=mine"]).preview.m == 4


def test_a_lat_config_dir_that_is_not_a_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LAT_CONFIG_DIR", str(tmp_path / "typo"))
    with pytest.raises(UserError, match=r"^LAT_CONFIG_DIR: .*typo is not a folder$"):
        load_config(["experiment=smoke"])


def test_an_unknown_config_name_suggests_the_closest(monkeypatch):
    with pytest.raises(UserError, match=r"^experiment=smok: no smok\.yaml in .*; known: .*smoke \(did you mean 'smoke'\?\)$"):
        load_config(["experiment=smok"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("eval.jsr_k=[-1]", r"^eval\.jsr_k: every item must be >= 1, got \[-1\]$"),
        ("eval.jsr_k=[3,0]", r"^eval\.jsr_k: every item must be >= 1"),
        ("train.lr=inf", r"^train\.lr: must be > 0 and finite, got inf$"),
        ("train.lr=nan", r"^train\.lr: must be > 0 and finite, got nan$"),
        ("data.val_size=-1", r"^data\.val_size: must be >= 0, got -1$"),
        ("eval.max_samples=0", r"^eval\.max_samples: must be >= 1, got 0$"),
        ("eval.utility_max_samples=0", r"^eval\.utility_max_samples: must be >= 1, got 0$"),
        ("data.max_train_samples=0", r"^data\.max_train_samples: must be >= 1, got 0$"),
        ("train.max_steps=0", r"^train\.max_steps: must be -1 \(no limit\) or >= 1, got 0$"),
        ("train.max_steps=-5", r"^train\.max_steps: must be -1 \(no limit\) or >= 1, got -5$"),
        ("train.checkpoint_every_n_steps=-1", r"^train\.checkpoint_every_n_steps: must be >= 0, got -1$"),
        ("data.probes=[{name: h, path: x.jsonl, max_samples: 0}]", r"^data\.probes\[h\]\.max_samples: must be >= 1, got 0$"),
    ],
)
def test_values_that_would_be_taken_silently_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        load_config(["experiment=smoke", override])


def test_the_limits_themselves_are_accepted():
    cfg = load_config(["experiment=smoke", "train.max_steps=-1", "data.val_size=0", "eval.max_samples=1", "eval.jsr_k=[1,3]"])
    assert cfg.train.max_steps == -1 and cfg.eval.jsr_k == [1, 3]


def test_a_section_given_as_a_list_names_the_section(tmp_path):
    path = tmp_path / "l.yaml"
    path.write_text("lora: [1, 2]\n")
    with pytest.raises(UserError, match=r"^config \(.*l\.yaml\): lora: expected a mapping of settings, got a list$"):
        load_config(["experiment=smoke", f"config={path}"])


def test_a_list_setting_given_as_a_mapping_is_one_line_naming_the_setting():
    with pytest.raises(UserError, match=r"^config \(override 'data\.probes=\{a: 1\}'\): data\.probes: expected a list, got a mapping$"):
        load_config(["experiment=smoke", "data.probes={a: 1}"])


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a:\n  b: [1\n  c: 2\n")
    with pytest.raises(UserError, match=r"bad\.yaml: invalid YAML at line 3, column 4 \(did not find expected"):
        load_config([f"config={path}"])


@pytest.mark.parametrize("kind", ["dir", "fifo"])
def test_a_config_file_that_is_a_directory_or_a_fifo_says_so(tmp_path, kind):
    import os

    path = tmp_path / "c.yaml"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises(UserError, match="is a directory, not a file" if kind == "dir" else "is not a regular file"):
        load_config([f"config={path}"])
