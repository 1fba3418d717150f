"""Full GAN train step at paper model size (configs/ffhq.py), JAX vs a PyTorch reference.

Step = critic update (non-saturating loss + R1) -> generator update (1e-3 adversarial +
lambda_C consistency [+ FM]) -> EMA, batch 4, 128x128, Generator 23 RRDB / 64 feat, Critic
ResNet34 (64-512), Adam (0, 0.99). FM draws ``fm_num_samples`` samples for min(8, 4) = 4 images
(paper: 16; default here 1, see ``--fm_num_samples``: 16 x 4 paper-size images forward+backward
do not fit this machine's time or memory).

Usage (from the repository root). Each paper-size step is tens of CPU-seconds; the default run
(JAX loop and scan+remat generators, torch, FM off and on) took 16 minutes on 2 idle cores:

    python benchmarks/train_step.py                       # FM off and on, torch 2 threads
    python benchmarks/train_step.py --jax_variants scan_remat --skip_torch --iters 1
    python benchmarks/train_step.py --smoke --out /tmp/smoke.json   # tiny models: checks only

JAX and torch steps are interleaved (same load); wall and process CPU seconds are both reported
(CPU time is less sensitive to other processes, but counts torch's OpenMP spin-waits).
Peak memory: JAX = XLA's compiled memory analysis of the step (argument + output + temp; the
donated state aliases); torch = growth of the process's max RSS over building its models and
running its warm-up steps (before JAX allocates anything).
Prints a markdown table, writes ``benchmarks/results/train_step.json``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpeg_jax.platform import configure_xla, restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import argparse  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import bench_utils  # noqa: E402
from configs import ffhq  # noqa: E402
from jpeg_jax import jpeg, train_state, train_step  # noqa: E402

SIZE, BATCH, QUALITY = 128, 4, 5
GIB = 2.0**30


def make_batch(seed: int = 0) -> dict:
    """Smooth random images (4x4 pixel cells), their libjpeg-exact QF-5 decode and tables."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (BATCH, SIZE // 4, SIZE // 4, 3))
    x = np.round(np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2) * 255) / 255
    x = x.astype(np.float32)
    qtables = np.broadcast_to(np.asarray(jpeg.quality_to_qtables(QUALITY)), (BATCH, 2, 8, 8))
    y = np.asarray(jpeg.compress(x, qtables), np.float32)
    return {"x": x, "y": y, "qtables": np.array(qtables, np.int32)}


# ----------------------------------------------------------------------------- JAX


def build_jax(config, batch: dict, cases: dict[str, bool]) -> tuple[dict, object, dict]:
    """Init the train state and compile one step per case; compile time and memory per case."""
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    step = jax.jit(
        train_step.make_train_step(config, models, optimizers),
        donate_argnums=0,
        static_argnames=("moments",),
    )
    key = jax.random.key(1)
    compiled, info = {}, {}
    for name, moments in cases.items():
        t0 = time.perf_counter()
        compiled[name] = step.lower(state, batch, key, moments=moments).compile()
        info[name] = {"compile_s": time.perf_counter() - t0, **memory_gib(compiled[name])}
        print(f"jax {name}: compiled {info[name]}", flush=True)
    return compiled, state, info


def memory_gib(compiled) -> dict:
    mem = compiled.memory_analysis()
    out = {
        f"{k}_gib": getattr(mem, f"{k}_size_in_bytes") / GIB
        for k in ("argument", "output", "temp", "alias")
    }
    out["peak_gib"] = out["argument_gib"] + out["output_gib"] + out["temp_gib"]
    return out


# ----------------------------------------------------------------------------- torch


def torch_critic(torch, widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), scale: float = 0.1):
    """jpeg_jax.models.critic.Critic in PyTorch: pre-activation ResNet34, no normalisation."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

        def forward(self, x):
            s = x if self.shortcut is None else self.shortcut(x)
            dx = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
            return s + scale * dx

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(6, widths[0], 7, 2, 3)
            layers, cin = [], widths[0]
            for s, (w, n) in enumerate(zip(widths, blocks, strict=True)):
                for i in range(n):
                    layers.append(Block(cin, w, 2 if (i == 0 and s > 0) else 1))
                    cin = w
            self.body = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, 1)

        def forward(self, x, y):
            h = F.max_pool2d(F.leaky_relu(self.stem(torch.cat([x, y], 1)), 0.2), 3, 2, 1)
            phi = F.leaky_relu(self.body(h), 0.2).mean((2, 3))
            return self.fc(phi)[:, 0]

    return Critic()


def torch_quantized_dct(torch, img, q_luma, q_chroma):
    """Float JPEG analysis (YCbCr, 4:2:0 box subsampling, 8x8 DCT-II / Q), NCHW [0, 1] input."""
    F = torch.nn.functional
    m = torch.tensor(
        [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
    )
    ycc = torch.einsum("ij,bjhw->bihw", m, img * 255.0)
    ycc = ycc - torch.tensor([128.0, 0.0, 0.0]).view(1, 3, 1, 1)
    n = torch.arange(8.0)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * torch.pi / 16) / 2
    d[0] /= 2**0.5

    def blocks(c, q):  # (B, H, W) -> (B, H/8, W/8, 8, 8) / Q
        b, h, w = c.shape
        c = c.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
        return (d @ c @ d.T) / q

    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    return [blocks(ycc[:, 0], q_luma), blocks(chroma[:, 0], q_chroma)] + [
        blocks(chroma[:, 1], q_chroma)
    ]


def torch_consistency(torch, x_hat, x, q_luma, q_chroma):
    """Smooth hinge (0.4, 0.6) of x_hat's coefficients vs round(x's), all of Y/Cb/Cr."""
    c = torch.cat([a.flatten(1) for a in torch_quantized_dct(torch, x_hat, q_luma, q_chroma)], 1)
    with torch.no_grad():
        t = torch.cat([a.flatten(1) for a in torch_quantized_dct(torch, x, q_luma, q_chroma)], 1)
    e = (c - t.round()).abs()
    return ((e - 0.4).clamp(0.0, 0.2).square() / 0.4 + (e - 0.6).clamp_min(0.0)).mean()


class TorchStep:
    """The same GAN step in PyTorch (generator: benchmarks/models.py's noisy RRDBNet)."""

    def __init__(self, torch, config, batch: dict):
        from benchmarks.models import torch_noisy_rrdbnet

        g = config.model.generator
        self.torch, self.config = torch, config
        self.gen = torch_noisy_rrdbnet(torch, g.num_feat, g.num_block, g.num_grow_ch)
        self.critic = torch_critic(torch, tuple(config.model.critic.widths))
        self.ema = [p.detach().clone() for p in self.gen.parameters()]
        o = config.optim
        adam = lambda m: torch.optim.Adam(m.parameters(), lr=o.lr_init, betas=(o.b1, o.b2))  # noqa: E731
        self.g_opt, self.d_opt = adam(self.gen), adam(self.critic)
        nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
        self.x, self.y = nchw(batch["x"]), nchw(batch["y"])
        self.q = [torch.tensor(batch["qtables"][0, i], dtype=torch.float32) for i in (0, 1)]

    def critic_update(self):
        torch, F = self.torch, self.torch.nn.functional
        with torch.no_grad():
            fake = self.gen(self.y)
        x = self.x.clone().requires_grad_(True)
        real = self.critic(x, self.y)
        (grad,) = torch.autograd.grad(real.sum(), x, create_graph=True)
        r1 = 0.5 * self.config.loss.r1_weight * grad.square().sum((1, 2, 3)).mean()
        loss = F.softplus(-real).mean() + F.softplus(self.critic(fake, self.y)).mean() + r1
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()

    def generator_update(self, moments: bool):
        torch, F, cl = self.torch, self.torch.nn.functional, self.config.loss
        self.critic.requires_grad_(False)
        x_hat = self.gen(self.y)
        loss = cl.adversarial_weight * F.softplus(-self.critic(x_hat, self.y)).mean()
        loss = loss + cl.consistency_min * torch_consistency(torch, x_hat, self.x, *self.q)
        if moments:
            n, s = min(cl.fm_num_images, BATCH), cl.fm_num_samples
            samples = self.gen(self.y[:n].repeat(s, 1, 1, 1)).view(s, n, 3, SIZE, SIZE)
            loss = loss + cl.fm_weight * (samples.mean(0) - self.x[:n]).square().mean()
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()
        self.critic.requires_grad_(True)
        with torch.no_grad():
            torch._foreach_lerp_(
                self.ema, list(self.gen.parameters()), 1 - self.config.optim.ema_decay
            )

    def __call__(self, moments: bool):
        self.critic_update()
        self.generator_update(moments)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def release_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps torch's freed activations resident)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux: KiB


# ----------------------------------------------------------------------------- main


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed torch steps per case")
    parser.add_argument("--jax_warmup", type=int, default=1, help="untimed JAX steps per case")
    parser.add_argument("--fm_num_samples", type=int, default=1, help="paper: 16")
    parser.add_argument("--cases", default="fm_off,fm_on")
    parser.add_argument("--torch_threads", default="2", help="comma list, e.g. 2,1")
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument(
        "--jax_variants",
        default="loop,scan_remat",
        help="generator trunk: loop (plain unrolled RRDBs) and/or scan_remat (lax.scan + remat)",
    )
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    parser.add_argument("--smoke", action="store_true", help="tiny models, to check the script")
    return parser.parse_args()


def run_torch_warmup(args, config, batch, cases) -> tuple[object, dict]:
    """Build the torch step and run its warm-ups first, so max RSS growth is torch's own."""
    try:
        import torch
    except ImportError:
        return None, {}
    threads = [int(t) for t in args.torch_threads.split(",")]
    torch.set_num_threads(threads[0])
    torch.manual_seed(0)
    rss0 = max_rss_gib()
    ref = TorchStep(torch, config, batch)
    info = {"version": torch.__version__, "threads": threads, "max_rss_delta_gib": {}}
    for name, moments in cases.items():
        for _ in range(args.warmup):
            ref(moments)
        info["max_rss_delta_gib"][name] = max_rss_gib() - rss0
        release_heap()
        print(f"torch {name}: max RSS +{info['max_rss_delta_gib'][name]:.2f} GiB", flush=True)
    return (torch, ref), info


def main() -> None:
    args = parse_args()
    config = ffhq.get_config()
    config.batch_size = BATCH
    config.loss.fm_num_samples = args.fm_num_samples
    if args.smoke:
        g = config.model.generator
        g.num_feat, g.num_block, g.num_grow_ch = 8, 1, 4
        config.model.critic.widths = (8, 8, 8, 8)
    all_cases = {"fm_off": False, "fm_on": True}
    cases = {c: all_cases[c] for c in args.cases.split(",")}
    batch = make_batch()
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bench_utils.machine(),
        "load_avg_start": os.getloadavg(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "setup": {
            "smoke": args.smoke,
            "batch": BATCH,
            "size": SIZE,
            "quality": QUALITY,
            "iters": args.iters,
            "warmup": args.warmup,
            "fm_num_images": min(8, BATCH),
            "fm_num_samples": args.fm_num_samples,
        },  # fmt: skip
    }
    torch_ref, results["torch"] = (None, {}) if args.skip_torch else run_torch_warmup(
        args, config, batch, cases
    )  # fmt: skip
    jax_steps, results["jax_compile"] = {}, {}
    for variant in args.jax_variants.split(","):
        impl = "jax" if variant == "loop" else f"jax_{variant}"
        cfg = config.copy_and_resolve_references()
        cfg.model.generator.scan = cfg.model.generator.remat = variant == "scan_remat"
        compiled, state, info = build_jax(cfg, batch, cases)
        results["jax_compile"].update({f"{impl}/{c}": v for c, v in info.items()})
        jax_steps[impl] = {"compiled": compiled, "state": state}
    key = jax.random.key(1)

    def jax_step(impl, name):
        holder = jax_steps[impl]
        holder["state"], holder["metrics"] = holder["compiled"][name](holder["state"], batch, key)
        jax.block_until_ready(holder["metrics"])

    for impl in jax_steps:  # warm-up
        for name in cases:
            for _ in range(args.jax_warmup):
                jax_step(impl, name)
    times = {}
    for _ in range(args.iters):  # interleaved: JAX variants then torch, case by case
        for name, moments in cases.items():
            for impl in jax_steps:
                times.setdefault((impl, name), []).append(
                    timed(lambda i=impl, n=name: jax_step(i, n))
                )
            if torch_ref is not None:
                torch, ref = torch_ref
                for threads in results["torch"]["threads"]:
                    torch.set_num_threads(threads)
                    wall_cpu = timed(lambda m=moments, r=ref: r(m))
                    times.setdefault((f"torch_{threads}t", name), []).append(wall_cpu)
                    release_heap()
            print({f"{k[0]} {k[1]}": v[-1] for k, v in times.items()}, flush=True)
    holder = next(iter(jax_steps.values()))
    metrics = holder["metrics"]
    results["metrics_last_step"] = {k: float(v) for k, v in metrics.items()}
    results["load_avg_end"] = os.getloadavg()
    report(results, times, cases)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


def report(results: dict, times: dict, cases: dict) -> None:
    """Median seconds per step, images/s, ratios vs JAX; markdown table into ``results``."""
    rows = {}
    for (impl, case), ts in times.items():
        sec, cpu = (float(np.median([t[i] for t in ts])) for i in (0, 1))
        rows[f"{impl}/{case}"] = {
            "s_per_step": sec,
            "images_per_s": BATCH / sec,
            "cpu_s_per_step": cpu,
            "wall_cpu_s": ts,
        }
    for key, row in rows.items():
        impl, case = key.split("/")
        ref = next(v for k, v in rows.items() if k.startswith("jax") and k.endswith(f"/{case}"))
        row["ratio_to_jax"] = row["s_per_step"] / ref["s_per_step"]
        row["cpu_ratio_to_jax"] = row["cpu_s_per_step"] / ref["cpu_s_per_step"]
    results["timings"] = rows
    lines = [
        "| impl | case | s/step | images/s | / first JAX | CPU s/step | / first JAX | compile s "
        "| peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in rows.items():
        impl, case = key.split("/")
        if impl.startswith("jax"):
            c = results["jax_compile"][key]
            comp, mem = f"{c['compile_s']:.1f}", f"{c['peak_gib']:.2f} (XLA)"
        else:
            comp, mem = "-", f"{results['torch']['max_rss_delta_gib'][case]:.2f} (RSS)"
        lines.append(
            f"| {impl} | {case} | {row['s_per_step']:.2f} | {row['images_per_s']:.3f} "
            f"| {row['ratio_to_jax']:.2f} | {row['cpu_s_per_step']:.1f} "
            f"| {row['cpu_ratio_to_jax']:.2f} | {comp} | {mem} |"
        )
    results["table"] = "\n".join(lines)
    print(results["table"])


if __name__ == "__main__":
    main()
