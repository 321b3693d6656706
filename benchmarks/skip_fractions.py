"""How many terms of a trained net's ℓp-dist layers the large-p skip test could leave out.

    python benchmarks/skip_fractions.py --model mnist-5x512-eps0.3 --data-dir ../shared/data

For each layer, on the inputs the first ``--images`` test images give it, the fraction of terms
(|x_k − w_mk| / max_k)^p ≥ 2^-40 (those the kernels must compute) at each p, and the fraction of groups of
16 outputs at one k (one AVX-512 vector of the forward kernel's tiles) holding at least one such term.
"""

from __future__ import annotations

import argparse
import json

import torch


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", help="folder with the datasets (default: the bundled MNIST test set)")
    parser.add_argument("--p", default="8.5,21,55,381,1000")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    import linfdist
    from linfdist.verify.datasets import load_dataset

    net = linfdist.load_model(args.model).eval()
    images, _ = load_dataset(net.config.dataset, "test", args.data_dir)
    x = torch.from_numpy(images[: args.images].copy()).float() / 255.0
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 and x.shape[-1] == 3 else x.reshape(len(x), *net.config.input_shape)
    inputs = []
    hooks = [layer.register_forward_hook(lambda mod, i, o: inputs.append((i[0].detach(), mod.weight.detach())))
             for layer in net.trunk.layers]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    rows = []
    for index, (a, w) in enumerate(inputs):
        a = a.reshape(len(a), -1)
        ratio = (a[:, None, :] - w[None]).abs()
        ratio = ratio / ratio.amax(-1, keepdim=True)
        for p in (float(v) for v in args.p.split(",")):
            counts = ratio >= 2.0 ** (-40 / p)
            m = counts.shape[1] // 16 * 16
            groups = counts[:, :m].reshape(len(a), m // 16, 16, -1).any(2).float().mean().item() if m else None
            rows.append({"layer": index, "in": a.shape[1], "out": w.shape[0], "p": p,
                         "terms": counts.float().mean().item(), "groups_of_16": groups})
            print(f"layer {index} ({a.shape[1]} -> {w.shape[0]}) p = {p:g}: terms that count {rows[-1]['terms']:.3f}"
                  + (f", groups of 16 outputs with one {groups:.3f}" if groups is not None else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "images": args.images, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
