"""Our training formulas against transcriptions of the authors' code (the test oracles below).

The ``theirs_*`` functions are copied from zbh2047/L_inf-dist-net-v2 at cc92bbf (main.py,
ell_inf_models.py, core/modules) and zbh2047/L_inf-dist-net at f2554c0 (main.py, adamw.py,
model/), with only their inputs made explicit; nothing in them calls linfdist.
"""

import math

import pytest
import torch
from torch.nn.functional import cross_entropy

from linfdist.losses import v1_hinge_loss, v2_mixture_loss
from linfdist.nn import LpDistLinear, MeanShift
from linfdist.optim import DecoupledLpDecay, make_optimizer
from linfdist.schedules import ce_lambda_at, eps_at, lr_at, p_at
from linfdist.train import RECIPES, Recipe, build_model

# --- v2: ell_inf_models.py MLPModel.forward (targets given) and main.py mixture ---------------------


def theirs_v2_outputs(dist, targets, eps, scalar):
    """MLPModel.forward after its last NormDist layer: ``dist`` is that layer's output x."""
    x = dist
    lower, upper = x - eps, x + eps
    x, lower, upper = -x, -upper, -lower
    margin = upper - torch.gather(lower, 1, targets.view(-1, 1))
    margin = margin.scatter(1, targets.view(-1, 1), 0)
    return x * scalar, margin / (2 * eps)


class TheirsMixture:
    def __init__(self, lam0=0.1, lam_end=0.001, clip=1):
        self.lam_start, self.lam_end, self.lam, self.clip = lam0, lam_end, lam0, clip
        self.speed = math.log(self.lam_end / self.lam_start)

    def update(self, ratio):
        self.lam = self.lam_start * math.exp(self.speed * ratio)

    def __call__(self, outputs, worst_outputs, targets):
        res = worst_outputs.clamp(min=0, max=self.clip)
        return res.max(dim=1)[0].mean() + self.lam * cross_entropy(outputs, targets)


# --- v1: model/model.py Model.forward + model/bound_module.py BoundFinalIdentity, main.py hinge/Loss --


def theirs_v1_outputs(dist, targets, eps):
    x = -dist  # MLP.forward negates the last layer
    lower, upper = x - eps, x + eps  # Model.forward: no bounds from the feature while training
    res = upper - torch.gather(lower, dim=1, index=targets.unsqueeze(-1))
    res = res.scatter(dim=1, index=targets.unsqueeze(-1), value=0)
    return x, res


def theirs_hinge(mix=0.75):
    def loss_fun(outputs, targets):
        return mix * outputs.max(dim=1)[0].clamp(min=0).mean() + (1 - mix) * outputs.clamp(min=0).mean()
    return loss_fun


class TheirsLoss:
    def __init__(self, loss, kappa):
        self.loss, self.kappa = loss, kappa

    def __call__(self, *args):
        margin_output = args[0] - torch.gather(args[0], dim=1, index=args[-1].view(-1, 1))
        if len(args) == 2:
            return self.loss(margin_output, args[-1])
        return self.kappa * self.loss(args[1], args[-1]) + (1 - self.kappa) * self.loss(margin_output, args[-1])


def _batch(seed, n=64, classes=10, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * spread
    return logits, torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("eps, clip, lam, spread", [(0.3 / 0.3081, 1.0, 0.05, 1.0), (0.45 / 0.3081, 1.0, 0.0002, 2.0),
                                                     (2 / 255 / 0.2009, 1.0, 0.002, 0.05), (0.1, 0.5, 0.1, 0.3)])
def test_v2_mixture_matches_the_authors_values_and_gradients(eps, clip, lam, spread):
    dist, targets = _batch(0, spread=spread)
    dist_a, dist_b = dist.clone().requires_grad_(), dist.clone().requires_grad_()
    scalar_a = torch.tensor([1.7], dtype=torch.float64, requires_grad=True)
    scalar_b = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    mixture = TheirsMixture(lam0=lam, lam_end=lam, clip=clip)
    theirs = mixture(*theirs_v2_outputs(dist_a, targets, eps, scalar_a), targets)
    ours = v2_mixture_loss(-dist_b, targets, 2 * eps, clip, lam, scalar_b)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    theirs.backward()
    ours.backward()
    torch.testing.assert_close(dist_b.grad, dist_a.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scalar_b.grad, scalar_a.grad[0], rtol=1e-10, atol=1e-12)
    # every sample with a margin in (0, 2ε) gets a gradient from the hinge (λ = 0 leaves the hinge alone)
    logits = (-dist).requires_grad_()
    v2_mixture_loss(logits, targets, 2 * eps, clip, 1e-300, torch.tensor(1.0, dtype=torch.float64)).backward()
    top2 = (-dist).topk(2, dim=1).values
    true = (-dist).gather(1, targets[:, None])[:, 0]
    m = torch.where((-dist).argmax(1) == targets, top2[:, 0] - top2[:, 1], true - top2[:, 0])
    inside = (m > 0) & (m < 2 * eps * (1 - 1e-9))
    assert inside.any() and (logits.grad[inside].abs().sum(1) > 0).all()


@pytest.mark.parametrize("mix, kappa", [(0.75, 1.0), (1.0, 1.0), (0.75, 0.6), (0.3, 0.0)])
def test_v1_hinge_matches_the_authors_values_and_gradients(mix, kappa):
    dist, targets = _batch(1, spread=0.5)
    eps = 0.225 / 0.3520
    dist_a, dist_b = dist.clone().requires_grad_(), dist.clone().requires_grad_()
    theirs = TheirsLoss(theirs_hinge(mix), kappa)(*theirs_v1_outputs(dist_a, targets, eps), targets)
    ours = v1_hinge_loss(-dist_b, targets, 2 * eps, mix, kappa)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    theirs.backward()
    ours.backward()
    torch.testing.assert_close(dist_b.grad, dist_a.grad, rtol=1e-10, atol=1e-12)
    assert dist_b.grad.abs().sum() > 0


def test_v2_loss_refuses_a_zero_radius():
    dist, targets = _batch(2)
    with pytest.raises(ValueError, match="ε_train > 0"):
        v2_mixture_loss(dist, targets, 0.0, 1.0, 0.1, torch.tensor(1.0))
    with pytest.raises(ValueError, match="eps_ramp_epochs=0"):
        Recipe(loss="v2", eps_ramp_epochs=3).checked()


# --- schedules: v2 main.py create_schedule, v1 main.py create_schedule --------------------------------


def theirs_v2_schedule(epochs, p_start, p_end, lr, lam0, lam_end, eps_train, batch_per_epoch):
    epoch_eps_start, epoch_eps_end, epoch_p_start, epoch_p_end, epoch_tot = epochs
    speed_p = math.log(p_end / p_start)
    mixture = TheirsMixture(lam0, lam_end)

    def num_batches(epoch, minibatch=0):
        return epoch * batch_per_epoch + minibatch

    def cal_ratio(epoch, epoch_start, epoch_end, minibatch):
        if epoch_end <= epoch_start:
            return 1
        return min(max(num_batches(epoch - epoch_start, minibatch) / num_batches(epoch_end - epoch_start), 0), 1)

    def schedule(epoch, minibatch):
        ratio = cal_ratio(epoch, 0, epoch_tot, minibatch)
        lr_now = 0.5 * lr * (1 + math.cos((ratio * math.pi)))
        ratio = cal_ratio(epoch, epoch_p_start, epoch_p_end, minibatch)
        if ratio >= 1 and p_end >= 100:
            p_norm = float('inf')
        else:
            p_norm = p_start * math.exp(speed_p * ratio)
        ratio = cal_ratio(epoch, epoch_eps_start, epoch_eps_end, minibatch)
        cur_eps = eps_train * ratio  # eps_schedule 'smooth' with eps_smooth 0 is the linear one
        ratio = cal_ratio(epoch, epoch_p_start, epoch_p_end, minibatch)
        mixture.update(ratio)
        return cur_eps, p_norm, mixture.lam, lr_now

    return schedule


def theirs_v1_schedule(epochs, p_start, p_end, lr, eps_train, batch_per_epoch):
    epoch0, epoch1, epoch2, epoch3, tot_epoch = epochs
    speed = math.log(p_end / p_start)

    def num_batches(epoch, minibatch=0):
        return epoch * batch_per_epoch + minibatch

    def schedule(epoch, minibatch):
        ratio = max(num_batches(epoch - epoch1, minibatch) / num_batches(tot_epoch - epoch1), 0)
        lr_now = 0.5 * lr * (1 + math.cos((ratio * math.pi)))
        ratio = min(max(num_batches(epoch - epoch1, minibatch) / num_batches(epoch3 - epoch1), 0), 1)
        if ratio >= 1:
            p_norm = float('inf')
        else:
            p_norm = p_start * math.exp(speed * ratio)
        if epoch2 > 0:
            ratio = min(max(num_batches(epoch - epoch0, minibatch) / num_batches(epoch2), 0), 1)
        else:
            ratio = 1.0
        return eps_train * ratio, p_norm, lr_now

    return schedule


def _close(a, b):
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize("name", ["mnist-0.3", "cifar10-2", "mnist-0.3-cpu", "cifar10-8-cpu"])
def test_v2_recipes_follow_the_authors_schedule_at_every_step(name):
    r = RECIPES[name]
    r = r.override([f"epochs={min(r.epochs, 40)}", f"p_warm_epochs={min(r.p_warm_epochs, 3)}",
                    f"p_inf_epochs={min(r.p_inf_epochs, 5)}"])
    steps = 7
    theirs = theirs_v2_schedule((0, 0, r.p_warm_epochs, r.epochs - r.p_inf_epochs, r.epochs), r.p_start, r.p_end,
                                r.lr, r.ce_lambda_start, r.ce_lambda_end, r.eps_train, steps)
    for epoch in range(r.epochs):
        for step in range(steps):
            t = epoch + step / steps
            eps, p, lam, lr = theirs(epoch, step)
            assert _close(p_at(r, t), p) and _close(ce_lambda_at(r, t), lam), (epoch, step)
            assert _close(lr_at(r, t), lr) and _close(eps_at(r, t), eps), (epoch, step)


@pytest.mark.parametrize("name", ["fmnist-0.1", "fmnist-0.1-cpu"])
def test_v1_recipes_follow_the_authors_schedule_at_every_step(name):
    r = RECIPES[name]
    r = r.override(["epochs=40", "p_warm_epochs=5", "lr_hold_epochs=5", "p_inf_epochs=6"])
    steps = 5
    theirs = theirs_v1_schedule((0, 5, 0, 34, 40), r.p_start, r.p_end, r.lr, r.eps_train, steps)
    for epoch in range(r.epochs):
        for step in range(steps):
            t = epoch + step / steps
            eps, p, lr = theirs(epoch, step)
            assert _close(p_at(r, t), p) and _close(lr_at(r, t), lr) and _close(eps_at(r, t), eps), (epoch, step)
    ramped = theirs_v1_schedule((0, 5, 3, 34, 40), r.p_start, r.p_end, r.lr, r.eps_train, steps)
    r3 = r.override(["eps_ramp_epochs=3"])
    assert all(_close(eps_at(r3, e + s / steps), ramped(e, s)[0]) for e in range(6) for s in range(steps))


def test_paper_recipes_are_the_authors_commands():
    """v2's command/mnist_0.3.sh, mnist_0.1.sh, cifar_0.03137.sh, cifar_0.0078425.sh; v1's
    command/ell_inf_dist_net_fashionmnist.sh."""
    v2 = dict(loss="v2", p_start=8.0, p_end=1000.0, batch_size=512, lr=0.03, logit_scale=1.0, logit_scale_lr=0.006,
              adam_betas=[0.9, 0.99], adam_eps=1e-10, weight_decay=0.0, eps_ramp_epochs=0.0, hinge_clip=1.0,
              identity_value=10.0, p_schedule="per-step", lr_hold_epochs=0.0, lr_final=0.0, crop_padding="edge")
    expected = {
        "mnist-0.3": dict(v2, dataset="mnist", depth=5, width=5120, epochs=450, p_warm_epochs=25, p_inf_epochs=50,
                          eps_test=0.3, eps_train=0.45, ce_lambda_start=0.05, ce_lambda_end=0.0002, crop_pad=1),
        "mnist-0.1": dict(v2, dataset="mnist", depth=5, width=5120, epochs=450, p_warm_epochs=25, p_inf_epochs=50,
                          eps_test=0.1, eps_train=0.3, ce_lambda_start=0.05, ce_lambda_end=0.0002, crop_pad=1),
        "cifar10-8": dict(v2, dataset="cifar10", depth=6, width=5120, epochs=1300, p_warm_epochs=100,
                          p_inf_epochs=50, eps_train=0.09411, ce_lambda_start=0.1, ce_lambda_end=0.0005, crop_pad=3,
                          flip=True),
        "cifar10-2": dict(v2, dataset="cifar10", depth=6, width=5120, epochs=1300, p_warm_epochs=100,
                          p_inf_epochs=50, eps_train=0.03922, ce_lambda_start=0.05, ce_lambda_end=0.002, crop_pad=3,
                          flip=True),
        "fmnist-0.1": dict(loss="v1", dataset="fashion-mnist", depth=5, width=5120, epochs=400, p_warm_epochs=50,
                           lr_hold_epochs=50, p_inf_epochs=50, eps_test=0.1, eps_train=0.225, batch_size=512,
                           lr=0.02, weight_decay=5e-3, hinge_mix=1.0, hinge_kappa=1.0, eps_ramp_epochs=0.0,
                           crop_pad=1, crop_padding="zeros", flip=False, p_schedule="per-step",
                           adam_betas=[0.9, 0.99], adam_eps=1e-10),
    }
    for name, fields in expected.items():
        recipe = RECIPES[name]
        assert {k: getattr(recipe, k) for k in fields} == fields, name
    assert RECIPES["cifar10-8"].eps_test == 8 / 255 and RECIPES["cifar10-2"].eps_test == 2 / 255


# --- initialisation: core/modules/norm_dist.py NormDist (v2), model/norm_dist.py NormDistConv (v1) -----


def theirs_identity_init(in_features, out_features, identity_val=10.0, std=1.0):
    weight = torch.randn(out_features, in_features) * std
    if identity_val is not None and in_features <= out_features:
        for i in range(out_features):
            weight[i, i % in_features] = -identity_val
    return weight


@pytest.mark.parametrize("shape", [(6, 15), (8, 8), (15, 6), (784, 1024)])
def test_identity_init_is_the_authors_pattern(shape):
    torch.manual_seed(3)
    theirs = theirs_identity_init(*shape)
    torch.manual_seed(3)
    ours = LpDistLinear(*shape, identity_value=10.0).weight.detach()
    assert torch.equal(ours, theirs)
    assert (ours == -10).sum() == (shape[1] if shape[0] <= shape[1] else 0)


def test_a_paper_width_net_starts_with_identity_in_its_first_layer():
    first = build_model(RECIPES["mnist-0.3"].override(["width=1024"])).trunk.layers[0].weight
    assert first.shape == (1024, 784) and torch.equal(first[torch.arange(1024), torch.arange(1024) % 784],
                                                      torch.full((1024,), -10.0))


def test_mean_shift_is_the_authors():
    """core/modules/basic_modules.py MeanShift(affine=False): batch mean in training, running mean (momentum 0.1)."""
    x = torch.randn(32, 5)
    ours = MeanShift(5)
    running = torch.zeros(5)
    for _ in range(3):
        out = ours(x)
        running.mul_(1 - 0.1).add_(x.mean(dim=0), alpha=0.1)
        torch.testing.assert_close(out, x - x.mean(0), rtol=0, atol=0)
    torch.testing.assert_close(ours.running_mean, running, rtol=1e-6, atol=1e-7)


# --- weight decay: v1 adamw.py AdamW ------------------------------------------------------------------


class TheirsAdamW(torch.optim.Optimizer):
    """v1's AdamW with ℓp weight decay, its ``get_p_norm(module)`` as ``module.p`` (None without one)."""

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        params = [{'params': p, 'module': m} for m in model.modules() for p in m.parameters(False)]
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                p_norm = getattr(group['module'], 'p', None)
                if p_norm is None:
                    p.mul_(1 - group['lr'] * group['weight_decay'])
                elif not math.isinf(p_norm):
                    sqr_p = p.view(p.size(0), -1)
                    sqr_p = sqr_p * sqr_p + group['eps']
                    sqr_p = sqr_p / sqr_p.max(dim=1, keepdim=True)[0]
                    pow_p = torch.pow(sqr_p, p_norm / 2 - 1)
                    sum_of_pow_p = torch.bmm(sqr_p.unsqueeze(1), pow_p.unsqueeze(2))
                    normalize_p = torch.pow(sum_of_pow_p, 2 / p_norm - 1).view(-1, 1) * pow_p
                    p.addcmul_(normalize_p.view_as(p), p, value=-group['lr'] * group['weight_decay'])
                else:
                    p2 = p.view(p.size(0), -1)
                    index = torch.max(p2.abs(), dim=1, keepdim=True)[1]
                    value = -group['lr'] * group['weight_decay'] * torch.gather(p2, index=index, dim=1)
                    p2.scatter_add_(dim=1, index=index, src=value)
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                beta1, beta2 = group['betas']
                state['step'] += 1
                bias_correction1 = 1 - beta1 ** state['step']
                bias_correction2 = 1 - beta2 ** state['step']
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group['eps'])
                step_size = group['lr'] / bias_correction1
                p.addcdiv_(exp_avg, denom, value=-step_size)


@pytest.mark.parametrize("p, architecture", [(8.0, "LinfDistNet"), (37.25, "LinfDistNet"), (math.inf, "LinfDistNet"),
                                             (8.0, "LinfDistNetMLP")])
def test_decoupled_lp_decay_with_adam_is_v1s_adamw(p, architecture):
    """Every parameter, the MLP head's too (v1's Predictor decays elementwise)."""
    recipe = Recipe(loss="v1", depth=3, width=12, weight_decay=5e-3, lr=0.02, dataset="mnist",
                    architecture=architecture, head_hidden=6)
    torch.manual_seed(0)
    ours = build_model(recipe.override(["depth=3", "width=12"]))
    theirs = build_model(recipe.override(["depth=3", "width=12"]))
    theirs.load_state_dict(ours.state_dict())
    for model in (ours, theirs):  # float64: Adam magnifies float32 rounding in near-zero gradients
        model.set_p(p)
        model.set_backend("torch")
        model.double()
    start = ours.trunk.layers[0].weight.detach().clone()
    optimizer, _, decay = make_optimizer(ours, recipe)
    their_optimizer = TheirsAdamW(theirs, lr=recipe.lr, betas=(0.9, 0.99), eps=1e-10, weight_decay=5e-3)
    x, y = torch.rand(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    for step in range(4):
        lr = recipe.lr * (1 - step / 8)
        for model, opt in ((ours, optimizer), (theirs, their_optimizer)):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad()
            v1_hinge_loss(model(x), y, 2 * 0.225 / 0.352, 1.0, 1.0).backward()
        decay.step(lr)
        optimizer.step()
        their_optimizer.step()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    assert not torch.allclose(start, ours.trunk.layers[0].weight)  # it trained


def test_lp_decay_shrinks_each_row_along_its_p_norm():
    """At p = ∞ only each row's largest entry moves; at finite p every entry, the larger ones more."""
    w = torch.tensor([[1.0, -3.0, 2.0], [0.5, 0.25, -0.125]])
    model = torch.nn.Sequential(LpDistLinear(3, 2, p=math.inf, identity_value=None))
    model[0].weight.data.copy_(w)
    model[0].weight.grad = torch.zeros_like(w)
    DecoupledLpDecay(model, 0.5, 1e-10).step(0.1)
    assert torch.equal(model[0].weight.data, torch.tensor([[1.0, -3.0 * 0.95, 2.0], [0.5 * 0.95, 0.25, -0.125]]))
    model[0].p = 4.0
    model[0].weight.data.copy_(w)
    DecoupledLpDecay(model, 0.5, 0.0).step(0.1)
    shrink = 1 - model[0].weight.data / w
    assert (shrink > 0).all() and shrink[0, 1] > shrink[0, 2] > shrink[0, 0]
