"""The policy base (the network of ``policy/``, kept beside ``base`` so that a base of kind
``policy`` loads without the policy package): an MLP-ResNet over Meta-World's state, as a
Hugging Face model.

π(s) = head(LN(blocks(embed(clip((s − μ)/σ))))), each block x + fc2(relu(fc1(LN(x)))) — the
shape of PSEC's policy network (an MLP-ResNet of 3 blocks × 256 with LayerNorm; the authors
predict diffusion noise with it, this base regresses the action directly: a CPU-sized
departure, docs/methods.md §16). μ and σ (the state normalisation, from the base's own
demonstrations, σ floored) and the clip live in the config, so they are part of the base's
fingerprint. The floor and the clip matter: a base cloned on reach/push/pick-place sees its
objects' quaternions almost constant (σ ≈ 0.002), and a new task that turns its object (a door)
then put |z| ≈ 500 on those inputs, which after the first LayerNorm drowned every other input
— a LoRA on the blocks could not recover the state (docs/methods.md §16).

It is a ``PreTrainedModel`` so that ``save_pretrained`` writes config.json and safetensors
and the library stores, fingerprints and verifies it like any base; its blocks sit in one
``ModuleList`` of linear layers, so ``arch.read_architecture`` finds them (targets
``fc1``, ``fc2``) and PEFT adapts them. ``AutoModel`` knows it once this module is imported.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

OBS_DIM, ACT_DIM = 39, 4  # Meta-World's state and action (policy.env)

MODEL_TYPE = "skillbank-policy"


class PolicyConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM, width: int = 256,
                 n_blocks: int = 3, obs_mean: list[float] | None = None,
                 obs_std: list[float] | None = None, obs_clip: float = 10.0, **kw):
        self.obs_dim, self.act_dim, self.width, self.n_blocks = obs_dim, act_dim, width, n_blocks
        self.obs_mean = list(obs_mean) if obs_mean is not None else [0.0] * obs_dim
        self.obs_std = list(obs_std) if obs_std is not None else [1.0] * obs_dim
        self.obs_clip = float(obs_clip)
        super().__init__(**kw)


class PolicyBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


class PolicyModel(PreTrainedModel):
    config_class = PolicyConfig
    base_model_prefix = "policy"
    main_input_name = "obs"

    def __init__(self, config: PolicyConfig):
        super().__init__(config)
        self.embed = nn.Linear(config.obs_dim, config.width)
        self.blocks = nn.ModuleList(PolicyBlock(config.width) for _ in range(config.n_blocks))
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.act_dim)
        self.register_buffer("obs_mean", torch.tensor(config.obs_mean, dtype=torch.float32),
                             persistent=True)
        self.register_buffer("obs_std", torch.tensor(config.obs_std, dtype=torch.float32),
                             persistent=True)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=5 ** 0.5)  # nn.Linear's own default
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        clip = self.config.obs_clip
        return ((obs - self.obs_mean) / self.obs_std).clamp(-clip, clip)

    def forward(self, obs: torch.Tensor, **_) -> torch.Tensor:
        """Actions for a batch of states [B, 39]; the environment clips them to [-1, 1]. No
        tanh: a squashed output trained on experts that hold the gripper at ±1 saturates,
        and a LoRA on the blocks then gets no gradient to change that action (measured:
        LoRA loss stuck at 0.25 where training from scratch reached 0.04)."""
        x = self.embed(self.features(obs))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


AutoConfig.register(MODEL_TYPE, PolicyConfig, exist_ok=True)
AutoModel.register(PolicyConfig, PolicyModel, exist_ok=True)


def new_policy(width: int, n_blocks: int, obs_mean, obs_std, seed: int) -> PolicyModel:
    """A freshly initialised policy (deterministic in ``seed``)."""
    torch.manual_seed(seed)
    config = PolicyConfig(width=width, n_blocks=n_blocks,
                          obs_mean=[float(x) for x in obs_mean], obs_std=[float(x) for x in obs_std],
                          architectures=["PolicyModel"])
    return PolicyModel(config)
