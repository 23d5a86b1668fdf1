"""The editing policy: an actor-critic over ``BeatEditEnv``'s flat observation.

Observation layout (``beatedit.editing.env.obs_layout``; the policy only needs the window sizes):

    [ window  W rows x (125 features + validity flag)  |  extra: 10 progress + 10 x R recent actions ]
      W = window_before + window_after; row ``window_before`` is the cursor beat; the env
      already standardises features per song (z-score, clipped to +-10) and zeroes rows
      outside the song (validity 0).

Network (shared encoder, separate heads, CleanRL-style orthogonal init):

    window rows  -> Linear(126 -> d_model) -> GELU -> encoder ("conv": pre-LN residual
                    Conv1d blocks, "transformer": pre-LN encoder layers with a key padding
                    mask and learned positions) -> [cursor row ; masked mean of rows]  (2 d_model)
    extra        -> Linear(-> hidden) -> tanh                                          (hidden)
    trunk        -> Linear(2 d_model + hidden -> hidden) -> tanh
    actor head   -> Linear(hidden -> hidden) -> tanh -> Linear(-> 10)   (last layer std 0.01)
    critic head  -> Linear(hidden -> hidden) -> tanh -> Linear(-> 1)    (last layer std 1.0)

Illegal actions get logit ``MASKED_LOGIT`` (-1e9): their probability is exactly 0 in
float32, so they are never sampled, and they contribute 0 to the entropy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from beatedit.editing.actions import N_ACTIONS
from beatedit.audio.schema import N_FEATURES
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

MASKED_LOGIT = -1e9
POLICY_KIND = "policy"


def float32(t: torch.Tensor):
    """A region where autocast is off (on ``t``'s device): the policy's small layers after the encoder."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def layer_init(layer: nn.Linear | nn.Conv1d, std: float = math.sqrt(2), bias_const: float = 0.0):
    """CleanRL's orthogonal init."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


class _ConvBlock(nn.Module):
    def __init__(self, d: int, k: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.conv = layer_init(nn.Conv1d(d, d, k, padding=k // 2))

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # h [B, W, d], valid [B, W, 1]
        # The Conv1d run as a 1 x k Conv2d on a channels-last view: [B, W, d] in memory *is* [B, d, 1, W] in
        # channels-last layout, so oneDNN reads and writes it in place, with no transposing copies either way
        # (and GELU's backward gets a contiguous tensor: on the transposed layout CPU took a strided path ~14x
        # slower). Same weights and function as self.conv.
        x = self.norm(h).transpose(1, 2).unsqueeze(2)  # [B, d, 1, W], channels-last strides
        w = self.conv.weight.unsqueeze(2)  # [d, d, 1, k] view; the channels-last input makes the output channels-last
        y = F.conv2d(x, w, self.conv.bias, padding=(0, self.conv.padding[0])).squeeze(2).transpose(1, 2)
        return (h + F.gelu(y.contiguous())) * valid  # contiguous() is a no-op when oneDNN kept channels-last


class ActorCritic(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int = N_ACTIONS, *, window_before: int = 8, window_after: int = 16,
                 n_features: int = N_FEATURES, encoder: str = "conv", d_model: int = 64, n_layers: int = 2,
                 n_heads: int = 4, kernel_size: int = 3, hidden: int = 128):
        super().__init__()
        self.config: dict[str, Any] = dict(obs_dim=obs_dim, n_actions=n_actions, window_before=window_before,
                                           window_after=window_after, n_features=n_features, encoder=encoder,
                                           d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                                           kernel_size=kernel_size, hidden=hidden)
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.window = window_before + window_after
        self.cursor = window_before
        self.n_features = n_features
        self.n_extra = obs_dim - self.window * (n_features + 1)
        if self.n_extra < 0:
            raise ValueError(f"obs_dim {obs_dim} is smaller than the window ({self.window} x ({n_features} + 1))")
        if encoder not in ("conv", "transformer"):
            raise ValueError(f"encoder must be 'conv' or 'transformer', got {encoder!r}")

        self.embed = layer_init(nn.Linear(n_features + 1, d_model))
        self.encoder_kind = encoder
        if encoder == "conv":
            self.blocks = nn.ModuleList([_ConvBlock(d_model, kernel_size) for _ in range(n_layers)])
        else:
            self.pos = nn.Parameter(torch.randn(self.window, d_model) * 0.02)
            layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.0,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.extra = layer_init(nn.Linear(max(self.n_extra, 1), hidden))
        self.trunk = layer_init(nn.Linear(2 * d_model + hidden, hidden))
        self.actor = nn.Sequential(layer_init(nn.Linear(hidden, hidden)), nn.Tanh(), layer_init(nn.Linear(hidden, n_actions), std=0.01))
        self.critic = nn.Sequential(layer_init(nn.Linear(hidden, hidden)), nn.Tanh(), layer_init(nn.Linear(hidden, 1), std=1.0))

    # ------------------------------------------------------------------ forward
    def _hidden(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"observation has {obs.shape[-1]} values, the policy was built for {self.obs_dim}")
        B, W, Fd = obs.shape[0], self.window, self.n_features
        rows = obs[:, : W * (Fd + 1)].reshape(B, W, Fd + 1)  # features + validity flag per row
        valid = rows[:, :, Fd:]  # [B, W, 1]
        h = F.gelu(self.embed(rows))  # [B, W, d]
        # a contiguous flag in h's dtype: under bf16 autocast a strided fp32 flag would turn every masking
        # multiply into a slow mixed-dtype broadcast (and promote the residual stream back to fp32)
        valid = valid.to(h.dtype).contiguous()
        if self.encoder_kind == "conv":
            h = h * valid
            for block in self.blocks:
                h = block(h, valid)
        else:
            pad = valid.squeeze(-1) < 0.5
            pad = pad & ~pad.all(1, keepdim=True)  # a row of all padding would give NaNs; never happens with a cursor
            h = self.blocks(h + self.pos, src_key_padding_mask=pad) * valid
        pooled = h.sum(1) / valid.sum(1).clamp_min(1.0)
        rest = obs[:, W * (Fd + 1):] if self.n_extra > 0 else obs.new_zeros(B, 1)
        # Everything after the window encoder runs in float32 even under autocast: it is a tiny share of the
        # compute, and bf16 outputs (2-3 significant digits) would quantise the values GAE differences and the
        # logits the PPO ratio is taken of. The encoder above is where bf16 pays.
        with float32(obs):
            e = torch.tanh(self.extra(rest.float()))
            return torch.tanh(self.trunk(torch.cat([h[:, self.cursor].float(), pooled.float(), e], -1)))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        h = self._hidden(obs)
        with float32(h):
            return self.critic(h).squeeze(-1)

    def masked_logits(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with float32(hidden):
            logits = self.actor(hidden)
        return logits.masked_fill(~mask.bool(), MASKED_LOGIT)

    def log_probs(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, n_actions] masked log-probabilities (illegal actions ~ -1e9)."""
        return torch.log_softmax(self.masked_logits(self._hidden(obs), mask), -1)

    def get_action_and_value(self, obs: torch.Tensor, mask: torch.Tensor, action: torch.Tensor | None = None,
                             generator: torch.Generator | None = None, greedy: bool = False):
        """(action [B], logprob [B], entropy [B], value [B]); samples when ``action`` is None."""
        h = self._hidden(obs)
        logp_all = torch.log_softmax(self.masked_logits(h, mask), -1)
        if action is None:
            if greedy:
                action = logp_all.argmax(-1)
            else:
                action = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
        logprob = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        entropy = masked_entropy(logp_all, mask)
        with float32(h):
            value = self.critic(h).squeeze(-1)
        return action, logprob, entropy, value


def attach_reference(policy: nn.Module, reference: nn.Module, device: torch.device | str) -> None:
    """Ready a policy for training against its reference (PPO's KL anchor, DPO's baseline): both on
    ``device``, the policy trainable (e.g. a deepcopy of the frozen reference), the reference frozen."""
    if policy is reference:
        raise ValueError("the policy and its reference must be two modules (copy the reference: models.bc.make_reference)")
    policy.to(device).train()
    reference.to(device).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    for p in policy.parameters():
        p.requires_grad_(True)


def masked_entropy(logp_all: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    p = logp_all.exp()
    return -(p * logp_all).masked_fill(~mask.bool(), 0.0).sum(-1)


def masked_kl(logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi || pi_ref) per row over the legal actions."""
    return (logp.exp() * (logp - logp_ref)).masked_fill(~mask.bool(), 0.0).sum(-1)


# ---------------------------------------------------------------------- checkpoints
def save_policy(path: str | Path, policy: ActorCritic, extra: dict | None = None, prov: dict | None = None) -> Path:
    return save_checkpoint(path, kind=POLICY_KIND, module=policy, config=policy.config, extra=extra, prov=prov)


def policy_from_payload(payload: dict, where: str = "<checkpoint>") -> ActorCritic:
    cfg = payload.get("config", {})
    if cfg.get("n_features", N_FEATURES) != N_FEATURES or cfg.get("n_actions", N_ACTIONS) != N_ACTIONS:
        raise CheckpointError(f"{where}: policy built for {cfg.get('n_features')} features / {cfg.get('n_actions')} actions, "
                              f"this code has {N_FEATURES} / {N_ACTIONS}")
    try:
        policy = ActorCritic(**payload["config"])
        policy.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: policy config/state do not fit this code ({exc})") from exc
    return policy.eval()


def load_policy(path: str | Path) -> tuple[ActorCritic, dict]:
    """(policy on CPU in eval mode, the whole payload); refuses another kind, feature schema or action vocabulary."""
    payload = load_checkpoint(path, kind=POLICY_KIND)
    return policy_from_payload(payload, str(path)), payload


def policy_for_env(env_cfg: Any, policy_cfg: Any) -> ActorCritic:
    """Build an ``ActorCritic`` for ``EnvConfig``'s observation and ``RLHFConfig.policy``'s sizes."""
    from beatedit.editing.env import obs_dim

    return ActorCritic(obs_dim(env_cfg), window_before=env_cfg.window_before, window_after=env_cfg.window_after,
                      encoder=policy_cfg.encoder, d_model=policy_cfg.d_model, n_layers=policy_cfg.n_layers,
                      n_heads=policy_cfg.n_heads, kernel_size=policy_cfg.kernel_size, hidden=policy_cfg.hidden)
