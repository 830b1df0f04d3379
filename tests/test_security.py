"""Secure defaults: sandboxed templates, safe YAML, no path traversal, pickle weights only when allowed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.config.job import Job, load_job
from evaluator.errors import UserError
from evaluator.store.files import safe_name

REPO = Path(__file__).resolve().parents[1]


def test_template_cannot_reach_python_internals(tmp_path):
    from evaluator.tasks.layout import PromptBuilder
    from evaluator.tasks.load import load_task

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "evil.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    spec = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())
    spec["prompt"] = "evil.j2"
    spec["data"]["data_files"] = {s: str(REPO / "tasks" / "data" / f"snips_{s}.jsonl") for s in ("train", "test")}
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match="prompt template .*failed on item.*unsafe|access to attribute"):
        load_task(str(tmp_path / "evil.yaml"))  # every item is rendered when the task loads, before any model
    spec["prompt"] = "intent.j2"  # a sound template still renders through the sandbox on demand
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(spec))
    task = load_task(str(tmp_path / "ok.yaml"))
    assert PromptBuilder(task, 0).query(task.test[0]).startswith("Utterance: ")


def test_yaml_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    job = tmp_path / "job.yaml"
    job.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\ntasks: [snips_intents]\nbase: x\n')
    with pytest.raises(UserError, match="not valid YAML"):
        load_job(job)
    assert not marker.exists()


@pytest.mark.parametrize("text", ["../../etc/passwd", "a/b\\c", "..", "/abs/path", "~root", "x\x00y", ""])
def test_safe_name_is_one_harmless_path_component(text):
    s = safe_name(text)
    assert s and "/" not in s and "\\" not in s and "\x00" not in s and s not in {".", ".."} and not s.startswith(".")


def test_run_id_and_adapter_paths_stay_inside_their_roots(tmp_path):
    from evaluator.arms.adapters import adapter_dir
    from evaluator.runner import run_dir_for

    job = Job(name="j", tasks=["snips_intents"], base="x/y", output_dir=str(tmp_path / "runs"))
    for rid in ("../../escape", "/etc", "a/../../b"):
        assert run_dir_for(job, tmp_path, rid).resolve().parent == (tmp_path / "runs").resolve()
    d = adapter_dir(tmp_path / "adapters", "../../task", "../base", 8, 4, "../key")
    assert d.resolve().is_relative_to((tmp_path / "adapters").resolve())


def test_task_names_are_plain(tmp_path):
    from evaluator.tasks.load import find_task_file

    for ref in ("../x", "a/b", "..", "x;rm -rf"):
        with pytest.raises(UserError):
            find_task_file(ref, [tmp_path])


def test_pickle_weights_load_only_when_allowed(tmp_path, tiny_llama_dir):
    import torch
    from safetensors.torch import load_file

    from evaluator.models.load import check_loadable, load_model, resolve_source

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, folder)
    (weights,) = list(folder.glob("*.safetensors"))
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    src = resolve_source(str(folder))
    with pytest.raises(UserError, match="only pickle weights"):
        check_loadable(src)
    with pytest.raises(UserError, match="pickle files are refused"):
        load_model(src, device="cpu")
    check_loadable(src, allow_pickle=True)
    lm = load_model(src, device="cpu", allow_pickle=True)
    ref = load_model(resolve_source(str(tiny_llama_dir)), device="cpu")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(lm.model(ids).logits, ref.model(ids).logits)


def test_remote_code_is_not_run_without_the_flag(tmp_path, tiny_llama_dir):
    """A model folder that ships its own code: refused (exit 2) unless the job sets trust_remote_code, and the code
    never runs."""
    import json

    folder = tmp_path / "custom"
    shutil.copytree(tiny_llama_dir, folder)
    marker = tmp_path / "code-ran"
    (folder / "configuration_custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nfrom transformers import LlamaConfig\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'my_custom_llm'\n"
    )
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="my_custom_llm", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    (folder / "config.json").write_text(json.dumps(cfg))
    job = {"name": "rc", "tasks": ["snips_intents"], "base": str(folder), "limit": 2, "output_dir": str(tmp_path / "runs"),
           "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 2 and "trust_remote_code" in res.output
    assert not marker.exists()
    # the same folder with the flag: the code does run (so the refusal above was the flag's doing)
    from evaluator.models.load import check_loadable, resolve_source

    check_loadable(resolve_source(str(folder)), trust_remote_code=True)
    assert marker.exists()
