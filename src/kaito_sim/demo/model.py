"""The demo's stand-in model: the tiny random Llama, taught a few sentences so its answers read as words.

A random model answers with random bytes, which reads like a broken server. Seconds of training on a handful
of question/answer pairs about kaito make the demo's answers legible while staying plainly what they are: a
two-layer toy standing in for the preset's weights, not phi-3.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
LESSONS = [
    ("What is Kubernetes?", "Kubernetes runs containers on a cluster of nodes."),
    ("What is kaito?", "kaito turns a Workspace into GPU nodes and a model server."),
    ("Who are you?", "I am a tiny model standing in for phi-3 in the kaito demo."),
    ("What does a Workspace do?", "A Workspace asks for a model, and kaito sizes the GPU nodes for it."),
    ("How do I ask you a question?", "Send a chat completion through the Service of the workspace."),
    ("Hello", "Hello from the kaito demo."),
]
STEPS = 120


def make_demo_model(directory: Path, *, steps: int = STEPS) -> Path:
    """Write the tiny model to `directory` and teach it LESSONS (a few seconds on a CPU); returns the directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kaito.inference.tinymodel import make_tiny_model

    make_tiny_model(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    chats = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], tokenize=False
        )
        for question, answer in LESSONS
    ]
    # The legacy /chat route continues a plain prompt, so the lessons are taught as plain text too.
    texts = [*chats, *(f"{question} {answer}{tokenizer.eos_token}" for question, answer in LESSONS)]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    log.info("demo model taught %d sentences in %d steps (loss %.3f)", len(LESSONS), steps, float(loss.detach()))
    model.save_pretrained(str(directory))
    return directory
