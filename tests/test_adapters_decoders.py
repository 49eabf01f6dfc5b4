"""Beyond BERT classifiers with every weight trained: decoder-only models (GPT-2, Llama, Qwen2
configs, last-token pooling), LoRA adapters through peft, and NEFTune; every method on each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from smartft.methods import METHODS, SetupInfo
from smartft.methods.neftune import NEFTune, NEFTuneConfig

from .conftest import train_args
from .test_engine import cli
from .test_smart import batch, tiny

FLAGS = {
    "freelb": ["--freelb_start_step", "1"],
    "lnsr": ["--lnsr_layer", "1"],
    "smart": ["--smart_eps", "1e-2"],
    "l2sp": ["--weight_decay", "0"],
}
ALL = sorted(METHODS)


def decoder(kind: str, tiny_model: str, folder: Path) -> str:
    """A tiny random decoder of `kind` with the tiny BERT's tokenizer, saved to `folder`."""
    from transformers import AutoTokenizer, GPT2Config, LlamaConfig, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    size = {"vocab_size": len(tokenizer)}
    common = {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        **size,
    }
    config = {
        "gpt2": GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, **size),
        "llama": LlamaConfig(**common),
        "qwen2": Qwen2Config(**common),
    }[kind]
    from transformers import AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("method", ALL)
def test_every_method_trains_a_decoder_classifier(
    kind: str,
    method: str,
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = decoder(kind, tiny_model, tmp_path / kind)
    out = tmp_path / "run"
    args = train_args(model, glue_dir, out, "--method", method, *FLAGS.get(method, []))
    code, _, err = cli([*args, "--num_train_epochs", "1"], capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_accuracy"] is not None
    config = json.loads((out / "config.json").read_text())
    assert config["pad_token_id"] == 0  # last-token pooling needs it


@pytest.mark.parametrize("method", ALL)
def test_every_method_trains_lora_adapters(
    method: str, tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lora"
    lora = ["--peft", "lora", "--lora_r", "4", "--lora_target_modules", "query,value"]
    args = train_args(tiny_model, glue_dir, out, "--method", method, *lora, *FLAGS.get(method, []))
    code, _, err = cli([*args, "--num_train_epochs", "1"], capsys)
    assert code == 0, err
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # the adapter, not a copy of the model
    code, text, err = cli(
        [
            "eval",
            "--model_name_or_path",
            str(out),
            "--task_name",
            "rte",
            "--data_dir",
            str(glue_dir),
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(text)["examples"] == 16


def test_smarts_teacher_averages_only_what_lora_trains(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = {}
    for name, extra in (
        ("full", []),
        ("lora", ["--peft", "lora", "--lora_target_modules", "query,value"]),
    ):
        out = tmp_path / name
        args = train_args(tiny_model, glue_dir, out, "--method", "smart", *extra)
        assert cli([*args, "--max_steps", "2"], capsys)[0] == 0
        sizes[name] = json.loads((out / "all_results.json").read_text())["teacher_own_bytes"]
    assert sizes["lora"] * 5 < sizes["full"]


def test_neftune_adds_bounded_uniform_noise_in_training_only() -> None:
    model = tiny().train()
    embeddings = model.get_input_embeddings()
    clean = embeddings(batch()["input_ids"]).detach()
    method = NEFTune({NEFTuneConfig: NEFTuneConfig(neftune_alpha=5.0)})
    method.setup(model, SetupInfo(10, False, 0))
    noisy = embeddings(batch()["input_ids"]).detach()
    bound = 5.0 / (clean.shape[1] * clean.shape[2]) ** 0.5
    change = (noisy - clean).abs()
    assert float(change.max()) <= bound and float(change.mean()) == pytest.approx(
        bound / 2, rel=0.1
    )
    model.eval()
    assert torch.equal(embeddings(batch()["input_ids"]), clean)


def test_lora_regression_adapters_load_with_their_one_output_head(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the base model's default head has two outputs: the saved config says one (STS-B)
    out = tmp_path / "lora-stsb"
    args = train_args(tiny_model, glue_dir, out, "--peft", "lora", "--lora_target_modules", "query")
    at = args.index("rte")
    args[at] = "stsb"
    assert cli([*args, "--max_steps", "2"], capsys)[0] == 0
    common = ["--model_name_or_path", str(out), "--task_name", "stsb", "--data_dir", str(glue_dir)]
    code, text, err = cli(["eval", *common], capsys)
    assert code == 0, err
    assert json.loads(text)["pearson"] == pytest.approx(
        json.loads((out / "all_results.json").read_text())["eval_pearson"]
    )


@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("shape", ["choice", "span"])
def test_decoders_answer_multiple_choice_and_span_tasks(
    kind: str, shape: str, tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one-output scorer (multiple choice) and the start/end head (span) on decoders, with
    SMART, and `smartft eval` on the saved model."""
    from .test_choice import mc_args, write_cosmos
    from .test_span import qa_args, write_squad

    model = decoder(kind, tiny_model, tmp_path / kind)
    out = tmp_path / "run"
    if shape == "choice":
        data, args, task = write_cosmos(tmp_path / "mc" / "CosmosQA"), mc_args, "cosmosqa"
    else:
        data, args, task = write_squad(tmp_path / "qa" / "SQuAD"), qa_args, "squad"
    code, _, err = cli(args(model, data, out, "--method", "smart", "--smart_eps", "1e-2"), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    metric = "eval_accuracy" if shape == "choice" else "eval_f1"
    command = ["eval", "--model_name_or_path", str(out), "--task_name", task]
    code, text, err = cli([*command, "--data_dir", str(data)], capsys)
    assert code == 0, err
    assert json.loads(text)[metric.removeprefix("eval_")] == pytest.approx(results[metric])
