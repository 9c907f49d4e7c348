"""Picks the next token from logits: greedy at temperature 0, else nucleus sampling from a per-request generator."""

from __future__ import annotations

import secrets

import torch

from kaito.inference.engine import Sampling


def request_generator(sampling: Sampling, device: torch.device) -> torch.Generator:
    """A private RNG per request, so a seed reproduces its text whatever else runs alongside."""
    seed = sampling.seed if sampling.seed is not None else secrets.randbits(63)
    return torch.Generator(device=device).manual_seed(seed)


def pick_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    """`logits` is the 1-D row for the last position."""
    if sampling.temperature == 0.0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p >= 1.0:
        return int(torch.multinomial(probs, 1, generator=generator).item())
    sorted_probs, order = torch.sort(probs, descending=True)
    # Keep the smallest prefix whose mass reaches top_p: a token stays if the mass before it is still short.
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    kept = torch.where(mass_before < sampling.top_p, sorted_probs, torch.zeros_like(sorted_probs))
    choice = torch.multinomial(kept, 1, generator=generator)
    return int(order[choice].item())
