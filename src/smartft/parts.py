"""Where things are in a Hugging Face model: the task head, the pre-trained parameters, the stack
of transformer blocks. Methods find what they act on through these, never by model class."""

from __future__ import annotations

from torch import nn

HEAD_NAMES = ("classifier", "score", "pre_classifier", "qa_outputs")


def head_modules(model: nn.Module) -> list[nn.Linear]:
    """The linear layers of the task head(s) (new at fine-tuning time, not pre-trained): under a
    top-level head module, or a multi-task model's per-task heads (`tasks.TASK.classifier`)."""

    def in_head(name: str) -> bool:
        parts = name.split(".")
        if parts[:2] == ["base_model", "model"]:  # a peft PeftModel around the model
            parts = parts[2:]
        return bool(parts) and (
            parts[0] in HEAD_NAMES
            or (parts[0] == "tasks" and len(parts) > 2 and parts[2] in HEAD_NAMES)
        )

    found = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and in_head(name)
    ]
    if not found:
        raise TypeError("cannot find the model's task head (classifier / score) linear layers")
    return found


def pretrained_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters outside the task head: the ones that came from the checkpoint."""
    head = {id(p) for m in head_modules(model) for p in m.parameters()}
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in head}


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer blocks: its longest ModuleList of one block class."""
    stacks = [
        m
        for m in model.modules()
        if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(x) for x in m}) == 1
    ]
    if not stacks:
        raise TypeError("cannot find the model's transformer layers")
    return max(stacks, key=len)


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout in the model to 0 (nn.Dropout modules, and the float attention-dropout
    attributes some attention implementations read); returns how many were changed."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            module.p = 0.0
            count += 1
        value = getattr(module, "attention_dropout", None)
        if isinstance(value, float) and value > 0:
            setattr(module, "attention_dropout", 0.0)  # noqa: B010 (a plain float attribute)
            count += 1
    return count
