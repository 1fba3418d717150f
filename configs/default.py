"""Every configuration key, with the paper's FFHQ-128 GAN ("Ours") as the defaults.

Other configs start from this one and override only what differs. Run any config with
``python train.py --config=configs/NAME.py --workdir=runs/NAME`` (``--config.key=value``
overrides single keys).
"""

import ml_collections
from ml_collections import config_dict

from jpeg_jax.data_config import default_data_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.mode = "gan"  # "gan" (posterior sampler) | "regression" (MMSE model, MSE only)
    config.batch_size = 32  # global, split over all devices and processes
    config.num_train_steps = 400_000
    config.log_every_steps = 100
    config.checkpoint_every_steps = 5_000
    config.keep_checkpoints = 3  # the most recent ones
    config.keep_period = 50_000  # also keep every N-th step (0: no)
    config.eval_every_steps = 5_000  # held-out metrics + image grid (0: never)
    config.num_eval_images = 8
    config.max_consecutive_skips = 20  # non-finite steps in a row before the run stops
    config.distributed = False  # jax.distributed.initialize(): SLURM/Open MPI/Cloud TPU detected
    config.coordinator_address = ""  # without a cluster manager: "host:port" of process 0
    config.num_processes = 0  # without a cluster manager: processes in the job (0: detect)
    config.process_id = -1  # without a cluster manager: this process's index (-1: detect)
    config.heartbeat_timeout_s = 100  # a process silent this long is lost: the others stop
    config.initialization_timeout_s = 300  # how long processes wait for each other at start
    config.init_from_export = ""  # initialise G from an export (regression warm start)
    config.regression_warmup_steps = 0  # GAN mode: the first N steps train G on MSE alone
    config.regression_warmup_critic_steps = 0  # ... the critic on G(y, 0) in the last N of them
    config.demo_figure = False  # after training: figure + metrics for a held-out photo

    config.data = default_data_config()
    config.data.source = "ffhq"
    config.data.quality_mode = "fixed"
    config.data.quality = 5
    config.data.eval_quality = 5

    config.model = ml_collections.ConfigDict()
    config.model.generator = ml_collections.ConfigDict(
        {
            "num_feat": 64,
            "num_block": 23,
            "num_grow_ch": 32,
            "noise": True,
            "film": False,
            "film_dim": 128,
            # Implementation choices (same function; jpeg_jax.platform.resolve_generator decides
            # "auto"/None for the backend at start-up): "xla" | "eigen" (custom-VJP CPU kernels).
            "conv_impl": "auto",
            "split_convs": config_dict.placeholder(bool),  # None: split on CPU if growth >= 32
            "remat": False,  # recompute each RRDB in the backward pass (memory)
            "scan": False,  # nn.scan over the RRDBs (one compiled block; stacked params)
            "input_skip": False,  # output = y + network(y) (not in the paper; demo)
            # Compute dtype of G and D, "float32" | "bfloat16": params, optimizer states, the
            # G output, the D logits and every loss stay float32 (README, "Mixed precision").
            "dtype": "float32",
        }
    )
    config.model.critic = ml_collections.ConfigDict(
        {"widths": (64, 128, 256, 512), "blocks": (3, 4, 6, 3), "film": False}
    )

    config.optim = ml_collections.ConfigDict(
        {
            "lr_init": 1e-4,
            "lr_final": 1e-7,
            "lr_steps": 400_000,
            "b1": 0.0,
            "b2": 0.99,
            "ema_decay": 0.999,
            "warmup_lr_init": 0.0,  # > 0: own cosine for the regression warm-up, then lr_init
        }
    )

    config.loss = ml_collections.ConfigDict(
        {
            "adversarial_weight": 1e-3,
            "r1_weight": 1.0,
            "consistency_min": 0.1,  # lambda_C cosine increase: min -> max over steps
            "consistency_max": 10.0,
            "consistency_steps": 400_000,
            "consistency_exact": True,  # libjpeg's integer rounding inside C (straight-through)
            "fm_weight": 1.0,
            "fm_every": 8,
            "fm_num_images": 8,
            "fm_num_samples": 16,
            "sm_weight": 0.0,
            "sm_mmse_export": "",  # export of the frozen MMSE regression model
            "perceptual_weight": 0.0,
            "perceptual_vgg_path": "",  # VGG19 .npz from `python -m jpeg_jax.models.vgg`
            "mse_weight": 0.0,
        }
    )
    return config
