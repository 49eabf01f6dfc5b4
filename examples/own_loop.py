"""SMART in your own PyTorch loop, in a few lines.

    python examples/own_loop.py --model_name_or_path all-MiniLM-L6-v2 --steps 20

Uses a handful of made-up sentences so it runs anywhere; swap in your own data loader.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from smartft import BregmanConfig, SmartConfig, SmartRegularizer, make_teacher
from smartft.modeling import resolve_model_path

TEXTS = ["a great and fun film .", "a boring , terrible movie .", "very good .", "quite bad ."]
LABELS = [1, 0, 1, 0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name_or_path", default="all-MiniLM-L6-v2")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)

    path = resolve_model_path(args.model_name_or_path)  # a local folder; hubs are unreachable
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    teacher = make_teacher(model, BregmanConfig(bregman_mu=1.0), total_steps=args.steps)
    regularizer = SmartRegularizer(model, SmartConfig(smart_lambda=1.0, smart_eps=1e-3))

    inputs = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    labels = torch.tensor(LABELS)
    model.train()
    for step in range(1, args.steps + 1):
        logits = model(**inputs).logits
        task = F.cross_entropy(logits, labels)
        loss = task + regularizer(inputs, logits) + 1.0 * teacher.bregman(inputs, logits, "sym_kl")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        teacher.update(model)  # after every optimizer step
        print(
            f"step {step:3d}  loss {loss.item():.4f}  task {task.item():.4f}  "
            f"R_s {regularizer.last.get('smart_rs', 0.0):.2e}"
        )
    regularizer.close()


if __name__ == "__main__":
    main()
