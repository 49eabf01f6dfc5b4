"""SMART (or any method) with transformers' Trainer, in a few lines.

    python examples/with_trainer.py --model_name_or_path all-MiniLM-L6-v2 --output_dir runs/trainer

Uses a handful of made-up sentence pairs so it runs anywhere; swap in your own dataset.
"""

from __future__ import annotations

import argparse

from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

from smartft.modeling import resolve_model_path
from smartft.regularizer import SmartConfig
from smartft.teacher import BregmanConfig
from smartft.trainer import MethodTrainer, SmartTrainer

PAIRS = [("a man sleeps .", "nobody sleeps .", 1), ("a dog runs .", "an animal moves .", 0)] * 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name_or_path", default="all-MiniLM-L6-v2")
    parser.add_argument("--output_dir", default="runs/trainer")
    parser.add_argument("--method", default="smart", help="smart, or any other --method name")
    args = parser.parse_args()

    path = resolve_model_path(args.model_name_or_path)  # a local folder; hubs are unreachable
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    train_ds = [
        {**tokenizer(a, b, truncation=True, max_length=128), "labels": y} for a, b, y in PAIRS
    ]
    training_args = TrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=4, num_train_epochs=1, report_to=[]
    )
    if args.method == "smart":  # SMART with its two config objects (defaults for any left out)
        trainer = SmartTrainer(
            model=model,
            args=training_args,
            train_dataset=train_ds,
            processing_class=tokenizer,  # pads each batch
            smart_config=SmartConfig(),
            bregman_config=BregmanConfig(),
        )
    else:  # any method by its --method name (its config objects: method_configs=[...])
        trainer = MethodTrainer(
            model=model,
            args=training_args,
            train_dataset=train_ds,
            processing_class=tokenizer,
            method=args.method,
        )
    trainer.train()  # or train(resume_from_checkpoint=True)
    print(f"{args.method}: trained {trainer.state.global_step} updates")


if __name__ == "__main__":
    main()
