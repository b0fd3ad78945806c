"""The training loop's accumulation: one optimizer step's gradient, however its data is split.

Plain torch, no Ray: a masked regression whose micro-batches have very different numbers of
counted rows, as SFT's micro-batches have different numbers of assistant tokens.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from pipelines.training.loop import TrainTask, WorkerContext, accumulate

CONFIG = SimpleNamespace(grad_accum=1, precision="fp32", use_gpu=False)


class MaskedRegression(TrainTask):
    """Loss: the mean squared error over the rows whose mask is 1 (like labelled tokens)."""

    def compute_loss(self, model, batch, ctx):
        errors = (model(batch["x"]).squeeze(-1) - batch["y"]) ** 2
        mask = batch["mask"]
        return (errors * mask).sum() / mask.sum().clamp(min=1), {"tokens": int(mask.sum())}

    def loss_weight(self, batch) -> float:
        return float(batch["mask"].sum())


def data() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=generator)
    y = torch.randn(16, generator=generator)
    mask = torch.zeros(16)
    mask[[0, 1, 2, 3, 4, 5, 6, 9, 13]] = 1  # 7 counted rows in the first half, 2 in the second
    return {"x": x, "y": y, "mask": mask}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 1)


def gradient(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def step_gradient(rows: dict[str, torch.Tensor], parts: int, ctx: WorkerContext, net=None):
    net = net or model()
    chunks = [{k: v[i] for k, v in rows.items()} for i in torch.arange(16).chunk(parts)]
    loss, tokens, _ = accumulate(MaskedRegression(), net, chunks, ctx)
    return gradient(net), loss, tokens


def context(rank: int = 0, world: int = 1) -> WorkerContext:
    return WorkerContext(rank, world, torch.device("cpu"), CONFIG, run_dir="")


def test_one_two_or_four_micro_batches_give_the_same_gradient():
    rows = data()
    whole, loss, tokens = step_gradient(rows, 1, context())
    with torch.no_grad():
        errors = (model()(rows["x"]).squeeze(-1) - rows["y"]) ** 2
    assert loss == pytest.approx(float((errors * rows["mask"]).sum() / 9), rel=1e-6)
    assert tokens == 9
    for parts in (2, 4):
        split, split_loss, _ = step_gradient(rows, parts, context())
        assert torch.allclose(split, whole, rtol=1e-6, atol=1e-7), parts
        assert split_loss == pytest.approx(loss, rel=1e-6)
    # the test can tell: micro-batch means averaged equally give another gradient
    net = model()
    for i in torch.arange(16).chunk(2):
        MaskedRegression().compute_loss(net, {k: v[i] for k, v in rows.items()}, None)[0].div(
            2
        ).backward()
    assert not torch.allclose(gradient(net), whole, rtol=1e-3)


def _rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    address, limit = f"tcp://127.0.0.1:{port}", timedelta(seconds=60)  # an error, not a hang
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2, timeout=limit)
    rows = {k: v[rank * 8 : (rank + 1) * 8] for k, v in data().items()}  # 7 vs 2 counted rows
    net = DistributedDataParallel(model())
    chunks = [{k: v[i] for k, v in rows.items()} for i in torch.arange(8).chunk(2)]
    accumulate(MaskedRegression(), net, chunks, context(rank, 2))
    torch.save(gradient(net.module), f"{out}/grad-{rank}.pt")
    # exit at once: tearing down DDP and the gloo group at interpreter exit can deadlock (the
    # reducer's destructor joins a gloo thread that waits for the GIL it holds)
    os._exit(0)


def test_two_workers_give_the_one_worker_gradient(tmp_path):
    whole, _, _ = step_gradient(data(), 1, context())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_rank, args=(port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    for rank in range(2):
        assert torch.allclose(torch.load(tmp_path / f"grad-{rank}.pt"), whole, rtol=1e-5, atol=1e-7)


def test_fsdp_shards_the_blocks_each_architecture_names_as_unsplittable():
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from pipelines.training.loop import decoder_layers
    from pipelines.training.presets import llama_config

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=3, n_head=4, vocab_size=300))
    assert [type(m).__name__ for m in decoder_layers(gpt2)] == ["GPT2Block"] * 3
    llama = LlamaForCausalLM(llama_config("tiny", 300))
    assert decoder_layers(llama) == list(llama.model.layers)
    qwen = Qwen2ForCausalLM(
        Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=128, vocab_size=300)
    )  # fmt: skip
    assert decoder_layers(qwen) == list(qwen.model.layers)
