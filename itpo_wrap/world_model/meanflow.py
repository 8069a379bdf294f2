"""MeanFlow dynamics: a one-step generative model of the normalized state delta
(METHOD.md section 5; Geng et al. 2025, arXiv 2505.13447).

Path ``z_t = (1 - t) x + t eps`` (t = 0 data, t = 1 noise), velocity ``v = eps - x``. The network
``u(z, r, t | s, a)`` learns the *average* velocity over ``[r, t]``, so one call maps pure noise to a
sample: ``x = z_1 - u(z_1, 0, 1 | s, a)``. That single call is what makes the adaptation loop cheap
(METHOD.md section 4: K = 1 instead of K = 10 network calls per imagined step).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from itpo_wrap.data.normalization import StateNormalizer
from itpo_wrap.world_model.config import MeanFlowConfig
from itpo_wrap.world_model.dynamics import Dynamics, weighted_mean
from itpo_wrap.world_model.networks import ConditionalResMLP

Teacher = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ddim_teacher(dynamics: Dynamics, steps: int = 10) -> Teacher:
    """``teacher(s_n, a_n, z_1) -> x``: a diffusion model's deterministic DDIM sampler started from ``z_1``,
    a fixed map from noise to a sample (the end point of its probability-flow ODE), for
    ``MeanFlowConfig.teacher_ratio``. The teacher must share the student's normalizers (bundles trained on
    the same dataset with the same split and seed do; ``train_world_model`` checks).

    :param dynamics: a trained ``DiffusionDynamics`` (copied; the original keeps its sampler).
    :param steps: DDIM steps (10: 0.036 state std on Hopper medium-replay against 0.032 for 10-step DDPM).
    """
    if getattr(dynamics, "kind", None) != "diffusion":
        raise ValueError(f"the teacher must be a diffusion model, got {getattr(dynamics, 'kind', type(dynamics))!r}")
    teacher = copy.deepcopy(dynamics).eval()
    teacher.set_timesteps(steps, "ddim")  # type: ignore[operator]
    for p in teacher.parameters():
        p.requires_grad_(False)

    def run(s: torch.Tensor, a: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        noise = z1.new_zeros(z1.shape[0], teacher.num_noise, z1.shape[-1])
        noise[:, 0] = z1  # DDIM is deterministic: only the start x_K matters
        return teacher.sample(s, a, noise)

    return run



def teacher_from_bundle(teacher: Any, norms: dict[str, StateNormalizer], device: torch.device) -> Teacher:
    """A diffusion bundle's DDIM map as MeanFlow's teacher, after checking it was trained in the student's
    normalized units (the same dataset, holdout and seed give the same normalizers).

    :param teacher: the diffusion ``WorldModel`` bundle (its ``normalizers`` and ``dynamics`` are read).
    :param norms: the student's ``obs``, ``act`` and ``delta`` normalizers.
    :param device: where the student trains.
    """
    for key, norm in norms.items():
        theirs = teacher.normalizers[key].state_dict()
        for name, value in norm.state_dict().items():
            if not torch.allclose(torch.as_tensor(value, dtype=torch.float32),
                                  torch.as_tensor(theirs[name], dtype=torch.float32).cpu()):
                raise ValueError(f"the teacher's {key} normalizer ({name}) differs from this run's: it was trained on "
                                 "other data or another holdout/seed; train the teacher with the same --dataset, "
                                 "--holdout and --seed")
    return ddim_teacher(teacher.dynamics.to(device))


def check_teacher(cfg: MeanFlowConfig, teacher: object | None) -> None:
    """The MeanFlow kind's training check: a teacher is given exactly when ``cfg.teacher_ratio > 0``.

    :param cfg: the config to train.
    :param teacher: the teacher bundle (or its path), ``None`` when the run has none.
    """
    if cfg.teacher_ratio > 0 and teacher is None:
        raise ValueError(f"MeanFlowConfig.teacher_ratio={cfg.teacher_ratio} (the shipped recipe) distils from a "
                         "diffusion bundle of the same dataset: pass teacher= (itpo train-world-model --teacher "
                         "wm_diffusion.pt), or set teacher_ratio=0 (--teacher-ratio 0) for plain MeanFlow")
    if cfg.teacher_ratio == 0 and teacher is not None:
        raise ValueError("a teacher was given but MeanFlowConfig.teacher_ratio=0 would never use it; "
                         "drop the teacher or set teacher_ratio > 0")


def teacher_inputs(cfg: MeanFlowConfig, teacher: Any, norms: dict[str, StateNormalizer],
                   device: torch.device) -> dict[str, Any]:
    """The MeanFlow kind's extra ``loss`` inputs: ``{"teacher": ...}`` when the config distils.

    :param cfg: the config to train (checked with :func:`check_teacher`).
    :param teacher: the diffusion ``WorldModel`` bundle, or ``None``.
    :param norms: the run's normalizers (the teacher must share them).
    :param device: where the student trains.
    """
    check_teacher(cfg, teacher)
    return {} if teacher is None else {"teacher": teacher_from_bundle(teacher, norms, device)}

class MeanFlowDynamics(Dynamics):
    """``s_{t+1} - s_t`` (normalized) from one (or a few) average-velocity steps.

    :param obs_dim: state width.
    :param act_dim: action width.
    :param cfg: loss, sampler and network settings.
    """

    kind = "meanflow"
    step_times: torch.Tensor

    def __init__(self, obs_dim: int, act_dim: int, cfg: MeanFlowConfig | None = None) -> None:
        super().__init__(obs_dim, act_dim)
        self.cfg = cfg or MeanFlowConfig()
        # Two time inputs, embedded as (t, t - r) (METHOD.md section 5).
        self.net = ConditionalResMLP(obs_dim, obs_dim + act_dim, 2, self.cfg.net)
        self.set_num_steps(self.cfg.num_inference_steps)

    def set_num_steps(self, num_steps: int) -> None:
        """Use ``num_steps`` uniform steps from t = 1 to t = 0 (1 is the one-step sampler).

        :param num_steps: number of network calls per sample.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps={num_steps} must be >= 1")
        grid = [1.0 - i / num_steps for i in range(num_steps + 1)]
        # Each step goes from t = grid[i] to r = grid[i + 1]: times (t, t - r), width t - r.
        rows = torch.tensor([[grid[i], grid[i] - grid[i + 1]] for i in range(num_steps)], dtype=torch.float32)
        self._widths = [grid[i] - grid[i + 1] for i in range(num_steps)]
        self._starts = grid[:-1]
        self._time_cache_key = None
        ref = next(self.parameters(), None)
        self.register_buffer("step_times", rows if ref is None else rows.to(ref), persistent=False)

    @property
    def num_noise(self) -> int:
        return 1  # the ODE is deterministic: only z_1 is random

    def sample(self, s: torch.Tensor, a: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``z_{r} = z_t - (t - r) u(z_t, r, t | s, a)`` from ``z_1 = noise[:, 0]`` down to t = 0."""
        if noise is None:
            noise = torch.randn(s.shape[0], 1, self.obs_dim, device=s.device, dtype=s.dtype)
        cond = self.net.cond_features(torch.cat([s, a], dim=-1))
        z = noise[:, 0]
        for i, width in enumerate(self._widths):
            out = self.net.forward_features(z, cond, self.step_time_features(i))
            # u = (z - F) / t, so z_r = z - (t - r) u = z + (t - r) / t (F - z)
            t = max(self._starts[i], self.cfg.t_floor)
            z = torch.lerp(z, out, width / t) if width != t else out
        return z

    def u(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, cond_feat: torch.Tensor) -> torch.Tensor:
        """Average velocity ``u(z, r, t | c)`` for ``(B,)`` times and precomputed condition features."""
        out = self.net.forward_features(z, cond_feat, self.net.time_features(torch.stack([t, t - r], dim=-1)))
        return (z - out) / t.clamp_min(self.cfg.t_floor).unsqueeze(-1)

    def sample_times(self, batch: int, device: torch.device, dtype: torch.dtype,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(t, r, n_flow)``: logit-normal times sorted so ``t >= r``; the first ``n_flow`` rows
        (``flow_ratio`` of the batch) have ``r = t``.

        A fixed split instead of a per-row coin (the batch is already a uniform random draw) lets
        the loss skip the JVP on the ``r = t`` rows, where ``t - r = 0`` makes the target just ``v``.
        """
        cfg = self.cfg
        n = torch.randn(2, batch, device=device, dtype=dtype, generator=generator)
        vals = torch.sigmoid(n * cfg.time_std + cfg.time_mean)
        t, r = vals.max(dim=0).values, vals.min(dim=0).values
        n_flow = int(round(cfg.flow_ratio * batch))
        r = torch.cat([t[:n_flow], r[n_flow:]])
        return t, r, n_flow

    def loss(
        self, s: torch.Tensor, a: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor | None = None,
        generator: torch.Generator | None = None, teacher: Teacher | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The MeanFlow loss ``w || u_theta - sg(u_tgt) ||^2`` with
        ``u_tgt = v - (t - r) (v . d_z u + d_t u)`` from one ``torch.func.jvp`` (METHOD.md section 5).

        :param weights: optional ``(B,)`` per-sample weights, mean 1.
        :param teacher: ``teacher(s, a, z_1) -> x``, the end point of the flow from noise ``z_1`` (all in
            normalized units); required when ``cfg.teacher_ratio > 0``. The last ``teacher_ratio`` of the
            rows then train the one-step point ``(r, t) = (0, 1)`` on ``u_tgt = z_1 - teacher(s, a, z_1)``.
        """
        b = s.shape[0]
        n_teacher = int(round(self.cfg.teacher_ratio * b))
        if n_teacher > 0:
            if teacher is None:
                raise ValueError(f"MeanFlowConfig.teacher_ratio={self.cfg.teacher_ratio} needs a teacher; pass "
                                 "teacher= (itpo train-world-model --teacher <diffusion bundle>) or set it to 0")
            z1 = torch.randn(delta[b - n_teacher:].shape, device=s.device, dtype=s.dtype, generator=generator)
            with torch.no_grad():
                x_teacher = teacher(s[b - n_teacher:], a[b - n_teacher:], z1)
            cond_t = self.net.cond_features(torch.cat([s[b - n_teacher:], a[b - n_teacher:]], dim=-1))
            ones = z1.new_ones(n_teacher)
            u_t = self.u(z1, torch.zeros_like(ones), ones, cond_t)
            # Plain squared error on teacher rows: their target is a fixed regression target, not the
            # bootstrapped identity the adaptive weight was made for, and the adaptive weight's 1 / err
            # scaling stalls the fit (0.106 vs 0.039 state std after 3k updates, Hopper medium-replay).
            err_t = (u_t - (z1 - x_teacher)).pow(2).sum(dim=-1)
            if n_teacher == b:
                loss = weighted_mean(err_t, weights)
                return loss, {"loss": loss.detach(), "u_mse": err_t.detach().mean() / self.obs_dim,
                              "teacher_mse": err_t.detach().mean() / self.obs_dim}
            w_rest = None if weights is None else weights[: b - n_teacher]
            w_t = None if weights is None else weights[b - n_teacher:]
            rest, metrics = self._identity_loss(s[: b - n_teacher], a[: b - n_teacher], delta[: b - n_teacher],
                                                w_rest, generator)
            share = n_teacher / b
            loss = (1.0 - share) * rest + share * weighted_mean(err_t, w_t)
            metrics.update(loss=loss.detach(), teacher_mse=err_t.detach().mean() / self.obs_dim)
            return loss, metrics
        return self._identity_loss(s, a, delta, weights, generator)

    def _weighted(self, err: torch.Tensor) -> torch.Tensor:
        """Adaptive weight ``sg(1 / (||delta||^2 + c)^p) * err``: a robust, scale-free loss (p = 1)."""
        if self.cfg.adaptive_p > 0:
            return (err.detach() + self.cfg.adaptive_c).pow(-self.cfg.adaptive_p) * err
        return err

    def _identity_loss(
        self, s: torch.Tensor, a: torch.Tensor, delta: torch.Tensor, weights: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The teacher-free MeanFlow loss over all rows (``loss`` without teacher rows)."""
        b = s.shape[0]
        eps = torch.randn(delta.shape, device=s.device, dtype=s.dtype, generator=generator)
        t, r, nf = self.sample_times(b, s.device, s.dtype, generator)
        z = torch.lerp(delta, eps, t.unsqueeze(-1))  # (1 - t) x + t eps
        v = eps - delta
        cond = self.net.cond_features(torch.cat([s, a], dim=-1))

        parts_u, parts_tgt = [], []
        if nf > 0:  # r = t: the identity's correction term vanishes, u_tgt = v (flow matching)
            parts_u.append(self.u(z[:nf], r[:nf], t[:nf], cond[:nf]))
            parts_tgt.append(v[:nf])
        if nf < b:
            # Tangent (v, 0, 1) on (z, r, t) gives the total derivative d/dt u along the path.
            c_mf = cond[nf:]
            u_mf, dudt = torch.func.jvp(  # type: ignore[misc]
                lambda z_, r_, t_: self.u(z_, r_, t_, c_mf),
                (z[nf:], r[nf:], t[nf:]),
                (v[nf:], torch.zeros_like(r[nf:]), torch.ones_like(t[nf:])),
            )
            parts_u.append(u_mf)
            parts_tgt.append((v[nf:] - (t[nf:] - r[nf:]).unsqueeze(-1) * dudt).detach())
        u, u_tgt = torch.cat(parts_u), torch.cat(parts_tgt)
        err = (u - u_tgt).pow(2).sum(dim=-1)
        loss = weighted_mean(self._weighted(err), weights)
        return loss, {"loss": loss.detach(), "u_mse": err.detach().mean() / self.obs_dim}

