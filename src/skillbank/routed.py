"""A routed model: a frozen base plus member skills mixed per input by a router skill.

W(x) = W0 + Σ_i α_i(x)·ΔW_i for every weight a member changes, with α(x) from a small MLP
over the base's last hidden state mean-pooled over the prompt tokens and a plain linear head
(no softmax), as in PSEC (docs/methods.md §1). This is how a stored ``router`` skill is
applied, as ``base.apply_skill`` applies a static one; training a router is
``compose.route``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .arch import in_out, is_linear
from .base import Base, check_base
from .skill import Skill, SkillError, lora_modules, lora_scale


class Router(nn.Module):
    """α(h) = W2·relu(W1·h + b1) + b2 (``layers`` hidden ReLU layers of ``width``; PSEC's
    policies use two of 256); the head starts at zero, so training starts at the base."""

    def __init__(self, hidden: int, n_skills: int, width: int = 64, layers: int = 1):
        super().__init__()
        dims = [hidden] + [width] * layers
        body = [m for a, b in zip(dims, dims[1:], strict=False) for m in (nn.Linear(a, b), nn.ReLU())]
        self.net = nn.Sequential(*body, nn.Linear(width, n_skills))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def member_changes(skill: Skill, stored_in_out: frozenset[str] = frozenset()
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor] | torch.Tensor]:
    """``{module: change}`` as an (out × in) map: a LoRA's own factors ``(A, B)`` (scale
    folded into B, B·A = ΔW); other static kinds their dense ΔW. ``stored_in_out`` names
    the modules whose weight is stored (in, out) (GPT-2's ``Conv1D``): their ΔW is
    transposed. 1-D changes (biases, norm scales) are :func:`member_vectors`'."""
    if skill.kind == "lora":
        return {m: (skill.tensors[f"{m}.lora_A.weight"].float(),
                    lora_scale(skill.config, skill.tensors[f"{m}.lora_A.weight"].shape[0])
                    * skill.tensors[f"{m}.lora_B.weight"].float())
                for m in lora_modules(skill.tensors)}
    out = {}
    for param, dw in skill.delta().items():
        if dw.dim() < 2:
            continue
        module = param.removesuffix(".weight")
        out[module] = dw.float().T if module in stored_in_out else dw.float()
    return out


def _rank(change) -> int:
    return change[0].shape[0] if isinstance(change, tuple) else min(change.shape)


def _as_factors(change) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with B·A = the change: a LoRA's own, else an exact full-rank SVD of ΔW."""
    if isinstance(change, tuple):
        return change
    u, sv, vh = torch.linalg.svd(change, full_matrices=False)
    return vh, u * sv


def _as_dense(change) -> torch.Tensor:
    return change[1] @ change[0] if isinstance(change, tuple) else change


def member_factors(skill: Skill, stored_in_out: frozenset[str] = frozenset()
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module: (A, B)}`` with B·A = ΔW as an (out × in) map: a LoRA's own factors (scale
    folded into B); other static kinds by an exact full-rank SVD."""
    return {m: _as_factors(c) for m, c in member_changes(skill, stored_in_out).items()}


def dense_is_cheaper(rank: int, in_f: int, out_f: int) -> bool:
    """Whether n members side by side cost less as dense ΔW (n·out·in multiply-adds per
    input) than as factor pairs of ``rank`` (n·rank·(in + out)). Always for a full-rank
    member, never for a LoRA of rank well below the layer's width; a tie keeps factors."""
    return rank * (in_f + out_f) > in_f * out_f


def member_vectors(members: Sequence[Skill]) -> dict[str, torch.Tensor]:
    """``{param: [n, d]}``: the members' changes to 1-D parameters (biases, norm scales),
    zero where a member leaves one alone."""
    shapes = [{p: sh for p, sh in m.delta_params().items() if len(sh) < 2} for m in members]
    out = {}
    for p in sorted(set().union(*shapes)):
        shape = next(s[p] for s in shapes if p in s)
        out[p] = torch.stack([(m.delta_of(p) if p in s else torch.zeros(shape)).reshape(-1)
                              for m, s in zip(members, shapes, strict=True)])
    return out


def linear_changes(model: nn.Module, members: Sequence[Skill], what: str, vectors: bool = False
                   ) -> dict[str, tuple[int, int, list]]:
    """``{module: (in, out, [change or None per member])}`` (see :func:`member_changes`)
    for every linear layer any member changes. SkillError naming ``what`` for a change to
    a non-linear layer, and, unless ``vectors`` (the caller applies :func:`member_vectors`),
    to a 1-D one."""
    if not vectors and (found := next((p for m in members for p, sh in m.delta_params().items()
                                        if len(sh) < 2), None)):
        raise SkillError(f"{what} supports changes to linear weights only; {found} is not one")
    modules = dict(model.named_modules())
    conv = frozenset(n for n, m in modules.items() if is_linear(m) and not isinstance(m, nn.Linear))
    changes = [member_changes(m, conv) for m in members]
    out = {}
    for name in sorted(set().union(*changes)):
        if name not in modules or not is_linear(modules[name]):
            raise SkillError(f"{what} supports linear layers only; {name} is not one")
        out[name] = (*in_out(modules[name]), [c.get(name) for c in changes])
    return out


def padded_factors(in_f: int, out_f: int, changes: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [n, r, in], B [n, out, r]): the members' factors zero-padded to a common rank (a
    member that leaves the layer alone, ``None``, has zeros there)."""
    factors = [None if c is None else _as_factors(c) for c in changes]
    r = max(f[0].shape[0] for f in factors if f is not None)
    A, B = torch.zeros(len(changes), r, in_f), torch.zeros(len(changes), out_f, r)
    for i, f in enumerate(factors):
        if f is not None:
            a, b = f
            A[i, : a.shape[0]], B[i, :, : a.shape[0]] = a, b
    return A, B


def linear_factors(model: nn.Module, members: Sequence[Skill], what: str,
                   vectors: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module: (A [n, r, in], B [n, out, r])}``: every member's factors on every linear
    layer any member changes (:func:`linear_changes`, :func:`padded_factors`)."""
    return {name: padded_factors(in_f, out_f, changes)
            for name, (in_f, out_f, changes) in linear_changes(model, members, what,
                                                               vectors).items()}


class RoutedModel(nn.Module):
    """A frozen base whose changed linear layers add Σ_i α_i(x)·ΔW_i x (forward hooks)."""

    def __init__(self, base_model: nn.Module, members: Sequence[Skill], router: Router,
                 form: str | None = None):
        """``form``: "dense" or "factors" for every changed layer; None (the default) picks
        per layer whichever costs less (:func:`dense_is_cheaper`). Both give the same map."""
        super().__init__()
        if form not in (None, "dense", "factors"):
            raise SkillError(f"routing form must be dense or factors, got {form!r}")
        self.model = base_model
        self.router = router
        self.members = list(members)
        for p in self.model.parameters():
            p.requires_grad_(False)
        modules = dict(self.model.named_modules())
        self._alpha: torch.Tensor | None = None
        self._A: dict[str, torch.Tensor] = {}
        self._B: dict[str, torch.Tensor] = {}
        self._rank: dict[str, int] = {}
        self._W: dict[str, torch.Tensor] = {}
        self.layers: list[str] = []  # every changed linear layer, in either form
        n = len(self.members)
        for name, (in_f, out_f, changes) in linear_changes(self.model, self.members, "routing",
                                                           True).items():
            # members side by side, in whichever form costs less (dense_is_cheaper): one
            # (n·out × in) matrix, or one (n·r × in) and one (out × n·r); one or two GEMMs
            self.layers.append(name)
            r = max(_rank(c) for c in changes if c is not None)
            if form == "dense" or (form is None and dense_is_cheaper(r, in_f, out_f)):
                self._W[name] = torch.cat([torch.zeros(out_f, in_f) if c is None else _as_dense(c)
                                           for c in changes])
                modules[name].register_forward_hook(self._dense_hook(name))
                continue
            A, B = padded_factors(in_f, out_f, changes)
            self._A[name] = A.reshape(n * r, in_f)
            self._B[name] = B.permute(1, 0, 2).reshape(out_f, n * r)
            self._rank[name] = r
            modules[name].register_forward_hook(self._hook(name))
        self._bias: dict[str, torch.Tensor] = {}   # module → [n, out]: Σ α_i Δb_i
        self._scale: dict[str, torch.Tensor] = {}  # norm → [n, d]: Σ α_i Δγ_i ⊙ norm(x)
        for param, v in member_vectors(self.members).items():
            name, _, leaf = param.rpartition(".")
            module = modules.get(name)
            if leaf == "bias" and module is not None and (is_linear(module)
                                                          or isinstance(module, nn.LayerNorm)):
                self._bias[name] = v
            elif leaf == "weight" and isinstance(module, nn.LayerNorm):
                self._scale[name] = v
            else:
                raise SkillError(f"routing supports linear layers and LayerNorm; {param} is "
                                 "neither a weight nor a bias of one")
        for name in sorted(set(self._bias) | set(self._scale)):
            modules[name].register_forward_hook(self._vector_hook(name))
        self.config = self.model.config
        self.generation_config = getattr(self.model, "generation_config", None)

    def _hook(self, name: str):
        def hook(_module, inputs, output):
            if self._alpha is None:
                return output
            z = torch.nn.functional.linear(inputs[0], self._A[name])  # [A_1 x … A_n x]
            a = self._alpha.repeat_interleave(self._rank[name], dim=1)  # α_i on block i
            z = z * a.view(a.shape[0], *([1] * (z.dim() - 2)), a.shape[1])  # [B, (T,) n·r]
            return output + torch.nn.functional.linear(z, self._B[name])  # Σ_i α_i B_i A_i x
        return hook

    def _dense_hook(self, name: str):
        def hook(_module, inputs, output):
            if self._alpha is None:
                return output
            x = inputs[0]
            z = torch.nn.functional.linear(x.reshape(x.shape[0], -1, x.shape[-1]), self._W[name])
            z = z.view(*z.shape[:2], self._alpha.shape[1], -1)  # [B, T, n, out]: ΔW_i x
            mixed = (self._alpha[:, None, None, :] @ z).squeeze(-2)  # [B, T, out]: Σ α_i ΔW_i x
            return output + mixed.view(output.shape)
        return hook

    def _vector_hook(self, name: str):
        def hook(module, inputs, output):
            if self._alpha is None:
                return output
            lead = (output.shape[0],) + (1,) * (output.dim() - 2) + (-1,)  # α per row
            if name in self._scale:
                normed = torch.nn.functional.layer_norm(inputs[0], module.normalized_shape,
                                                        eps=module.eps)
                output = output + normed * (self._alpha @ self._scale[name]).view(lead)
            if name in self._bias:
                output = output + (self._alpha @ self._bias[name]).view(lead)
            return output
        return hook

    @torch.no_grad()
    def context(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                prompt_mask: torch.Tensor) -> torch.Tensor:
        """The router's input: the base's last hidden state, mean over the prompt tokens."""
        self._alpha = None
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        w = prompt_mask.unsqueeze(-1).float()
        return (out.hidden_states[-1] * w).sum(1) / w.sum(1).clamp(min=1.0)

    def alpha(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              prompt_mask: torch.Tensor) -> torch.Tensor:
        return self.router(self.context(input_ids, attention_mask, prompt_mask))

    def forward(self, input_ids, attention_mask, labels=None, context=None, **kw):
        """``context`` (optional): the batch's :meth:`context`, computed before (a causal
        base's prompt states do not depend on the answer, so a prompt-only pass gives them)."""
        if context is None:
            prompt = attention_mask.bool() & (labels == -100) if labels is not None \
                else attention_mask.bool()
            context = self.context(input_ids, attention_mask, prompt)
        self._alpha = self.router(context)
        if labels is not None:  # an encoder's forward takes no labels
            kw["labels"] = labels
        try:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw)
        finally:
            self._alpha = None

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, **kw):
        self._alpha = self.alpha(input_ids, attention_mask, attention_mask.bool())
        try:
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kw)
        finally:
            self._alpha = None


def load_routed(base: Base, router_skill: Skill, members: Sequence[Skill]) -> RoutedModel:
    """Rebuild a routed model from a stored router skill and its member skills."""
    check_base(router_skill, base)
    if [m.ref for m in members] != router_skill.config["members"]:
        raise SkillError(f"router {router_skill.ref} expects members {router_skill.config['members']}")
    router = Router(router_skill.config["hidden"], len(members), router_skill.config["width"],
                    router_skill.config.get("layers", 1))
    router.load_state_dict({k.removeprefix("router."): v for k, v in router_skill.tensors.items()
                            if k.startswith("router.")})  # a classifier router also holds heads
    model = RoutedModel(base.load_model(), members, router)
    model.eval()
    return model


