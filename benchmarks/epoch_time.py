"""Seconds per training epoch of a recipe at fixed values of p, from timed training steps.

    python benchmarks/epoch_time.py --recipe mnist-0.3-cpu --p 8,50,400,1000,inf --steps 20 --data-dir ../shared/data
    python benchmarks/epoch_time.py --recipe cifar10-2-cpu --set width=1024 --p 8,inf --data-dir ../shared/data

Each p runs ``--steps`` steps of the recipe's own loop body (augmentation, forward, loss, backward,
weight decay, Adam) on real training batches after two untimed ones; the epoch figure is the median
step time times the recipe's steps per epoch (evaluation excluded). Run it twice with
``LINFDIST_NATIVE_LIB`` pointing at two builds of the native kernels to compare them on one machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--p", default="8,50,400,1000,inf")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a recipe field (width, depth, batch_size, ...), as for linfdist train")
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    import torch

    from linfdist.augment import augment
    from linfdist.data import load_dataset
    from linfdist.evaluate import pixels
    from linfdist.kernels import native
    from linfdist.losses import training_loss
    from linfdist.optim import make_optimizer
    from linfdist.train import build_model, get_recipe

    recipe = get_recipe(args.recipe).override(args.set)
    images, labels = load_dataset(recipe.dataset, "train", args.data_dir)
    x_all, y_all = pixels(images), torch.from_numpy(labels).long()
    steps_per_epoch = math.ceil(len(x_all) / recipe.batch_size)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for p in [float(v) for v in args.p.split(",")]:
        torch.manual_seed(0)
        model = build_model(recipe)
        model.set_p(p)
        model.train()
        optimizer, scale, decay = make_optimizer(model, recipe)
        times = []
        for step in range(args.steps + 2):
            idx = torch.randint(0, len(x_all), (recipe.batch_size,), generator=generator)
            start = time.perf_counter()
            x = augment(x_all[idx], recipe, generator)
            lipschitz = model.trunk.input_lipschitz()
            loss = training_loss(model(x), y_all[idx], recipe, lipschitz, scale, recipe.p_warm_epochs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            decay.step(recipe.lr)
            optimizer.step()
            if step >= 2:
                times.append(time.perf_counter() - start)
        step_seconds = statistics.median(times)
        rows.append({"p": "inf" if math.isinf(p) else p, "step_seconds": step_seconds,
                     "epoch_seconds": step_seconds * steps_per_epoch})
        print(f"{args.recipe} p={p:g}: {step_seconds * 1e3:.1f} ms/step, {step_seconds * steps_per_epoch:.1f} s/epoch "
              f"({steps_per_epoch} steps)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"recipe": args.recipe, "set": args.set, "native": native.isa_name(), "threads": torch.get_num_threads(),
                       "date": time.strftime("%Y-%m-%d"), "steps": args.steps, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
